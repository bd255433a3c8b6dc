"""The training loop every recipe shares: collect -> advantages -> update -> sync -> eval
-> checkpoint -> log. It knows nothing of games, tasks or prompts: that is the recipe's.

Everything a run produces lives in its run folder:
    config.yaml            the resolved config
    metrics.jsonl          one row per step; tensorboard/ the same as events
    transcripts.jsonl      a few episodes per evaluation, for `selfplay report`
    checkpoints/step-N/    the model in Hugging Face format (safetensors; the fp32 master
                           weights when model.dtype is bf16) + tokenizer
                           (with `optim.average_decay`, the averaged weights; the online
                           weights the learner trains are in step-N/online/)
                           + trainer_state.pt (optimizer, weight average, RNGs, step)
                           + the recipe's own state (e.g. spiral.json)
A checkpoint is written to a staging folder and renamed into place, so a crash never
leaves a half-written one where `--resume` would find it.

With `distributed.max_staleness: k` (asynchronous mode, Ray rollout workers) the recipe's
collect and advantages run on a background thread (selfplay.rollout.pipeline), sampling the next
batches with weights at most k updates old while this thread updates; the learner's PPO ratio is
then taken against the samples' recorded behaviour log-probs.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from tqdm import tqdm

from selfplay import distributed
from selfplay.algorithms.learner import Learner
from selfplay.checkpoints import write_checkpoint
from selfplay.config import ConfigError, TrainConfig, save_config
from selfplay.metrics import MetricsLogger
from selfplay.models import SamplingParams
from selfplay.models.policy import Policy
from selfplay.recipes import RecipeContext, recipe_class
from selfplay.rollout.pipeline import CollectPipeline
from selfplay.seeding import seed_everything

PROGRESS_WIDTH = 80  # the live progress line fits an 80-column terminal


class SamplerMismatch(RuntimeError):
    """The generator's log-probs are not the learner's: training on them would be off-policy garbage."""


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path, resume_from: Path | None = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        # under torchrun: one of several learner processes; only process 0 writes the run folder
        self.world = distributed.init_from_env()
        if self.world.active and (cfg.backend == "vllm" or cfg.distributed.rollout_workers):
            raise ConfigError("backend=vllm and distributed.rollout_workers sample for one learner process: "
                              "run them without torchrun, or torchrun with backend=hf and no rollout workers")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        transformers.utils.logging.disable_progress_bar()  # one bar: ours (not one per checkpoint)
        seed_everything(cfg.seed)
        if self.world.is_main:
            save_config(cfg, self.run_dir / "config.yaml")

        self.policy = Policy(cfg.model, cfg.optim, cfg.sampling, cfg.seed, resume_from, cfg.backend, cfg.vllm,
                             cfg.distributed)
        self.learner = Learner(
            self.policy.model, cfg.optim, norm_constant=cfg.optim.norm_constant or cfg.sampling.max_new_tokens,
            ref_model=self.policy.reference if cfg.optim.kl_coef > 0 else None,
            autocast_dtype=self.policy.compute_dtype if self.policy.mixed_precision else None,
            # samples a few updates old: the ratio against the policy that sampled them
            use_sampler_logprobs=self.policy.staleness > 0,
        )
        # stop_token_ids=None: the tokenizer's EOS and the chat template's end-of-turn
        sampling = cfg.sampling
        context = RecipeContext(
            seed=cfg.seed, run_dir=self.run_dir,
            sampling=SamplingParams(sampling.temperature, sampling.top_p, sampling.max_new_tokens),
            eval_sampling=SamplingParams(cfg.eval.temperature, sampling.top_p, sampling.max_new_tokens),
            legal_token_ids=self.learner.needs_legal_token_ids,
        )
        self.recipe = recipe_class(cfg.recipe.name)(cfg.recipe, self.policy, context)
        self.step = 0
        self.pipeline: CollectPipeline | None = None  # asynchronous mode, while train() runs
        if resume_from:
            self._load_state(resume_from)
        self.logger = MetricsLogger(self.run_dir, resume_step=self.step) if self.world.is_main else None

    # ---- one step -------------------------------------------------------------------
    def train_step(self) -> dict:
        # collect: the recipe samples with the current weights and scores what it sampled
        t0 = time.perf_counter()
        if self.pipeline:  # sampled in the background with older weights, advantages set there too
            batch, trained, t_sample = self.pipeline.get(self.step)
            t_collect = time.perf_counter() - t0  # what the learner waited for it
            batch.metrics.update({"staleness": self.step - self.pipeline.version(self.step),
                                  "time/sample_s": t_sample})
        else:
            self.policy.model.eval()
            batch, trained, t_sample = self._collect_and_score(self.step)
            t_collect = t_sample
        samples = batch.samples

        # update, then push the new weights to the sampler (and the weight average)
        t1 = time.perf_counter()
        lr = self.learning_rate()
        for group in self.learner.optimizer.param_groups:
            group["lr"] = lr
        self.policy.before_update()
        self.policy.model.train()
        stats = self.learner.update(trained) if trained else {}
        self.check_sampler(stats.get("sampler_logprob_gap"))
        self.policy.sync()
        t_update = time.perf_counter() - t1

        tokens = [len(s.response_ids) for s in samples]
        metrics = {
            "samples": len(samples),
            "response_length": float(np.mean(tokens)) if samples else 0.0,
            "truncation_rate": float(np.mean([s.truncated for s in samples])) if samples else 0.0,
            "advantage_abs": float(np.mean([abs(s.advantage) for s in samples])) if samples else 0.0,
            "lr": lr,
            "time/collect_s": t_collect,
            "time/update_s": t_update,
            "throughput/samples_per_s": len(samples) / max(t_sample, 1e-9),
            "throughput/tokens_per_s": sum(tokens) / max(t_sample, 1e-9),
            **batch.metrics,
        }
        metrics.update({f"loss/{k}": v for k, v in stats.items()})
        return metrics

    def check_sampler(self, gap: float | None) -> None:
        """Stop the run, unsaved, when the sampler's log-probs are not the learner's."""
        bound = self.cfg.max_sampler_logprob_gap
        if gap is not None and bound is not None and gap > bound:
            raise SamplerMismatch(
                f"step {self.step + 1}: the sampler's log-probs differ from the learner's by {gap:.3f} per token "
                f"on average (max_sampler_logprob_gap={bound}): backend={self.cfg.backend} is not sampling the "
                f"model being trained (stale weights, another tokenizer or dtype?); the run stops here, its last "
                f"checkpoint is intact")

    def learning_rate(self) -> float:
        """The learning rate of the step about to be taken (a pure function of the step,
        so a resumed run follows the same schedule)."""
        optim = self.cfg.optim
        if optim.lr_schedule == "constant":
            return optim.lr
        progress = self.step / max(self.cfg.steps - 1, 1)
        return optim.lr * (1 - (1 - optim.lr_final_fraction) * progress)

    # ---- asynchronous mode -------------------------------------------------------------
    def _collect_and_score(self, step: int):
        """What comes before the update (in asynchronous mode, the pipeline's job): the recipe
        samples and scores (timed), then its estimator sets the advantages and says which
        samples to train on."""
        start = time.perf_counter()
        batch = self.recipe.collect(step)
        t_sample = time.perf_counter() - start
        return batch, self.recipe.advantages(batch), t_sample

    def evaluates_after(self, step: int) -> bool:
        return bool(self.cfg.eval.every) and (step % self.cfg.eval.every == 0 or step == self.cfg.steps)

    def saves_after(self, step: int) -> bool:
        """(A time-limit stop saves too, unforeseen.)"""
        return step % self.cfg.save_every == 0 or step == self.cfg.steps

    def sync_point(self, step: int) -> bool:
        """Whether the trainer evaluates or saves after `step` updates, or the recipe's collection
        of that step reads the trained weights: the pipeline is idle there."""
        return self.evaluates_after(step) or self.saves_after(step) or self.recipe.reads_weights(step)

    def _start_pipeline(self) -> None:
        generator, start = self.policy.generator, self.step
        first = generator.latest  # the version holding the weights the run starts from
        self.pipeline = CollectPipeline(self._collect_and_score, lambda updates: generator.use(first + updates - start),
                                        self.policy.staleness, self.sync_point, start, self.cfg.steps)

    def _quiet(self) -> None:
        """Before an evaluation or a checkpoint: no collection running, the newest weights sampling."""
        if self.pipeline:
            self.pipeline.drain()
            self.policy.generator.use(self.policy.generator.latest)

    # ---- evaluation -------------------------------------------------------------------
    def evaluate(self) -> dict:
        results = [self.recipe.evaluate(self.step)]
        if self.cfg.eval.suites:  # reasoning suites on fixed subsets, for any recipe
            results.append(self.recipe.evaluate_suites(self.step, self.cfg.eval.suites,
                                                       self.cfg.eval.suite_max_new_tokens))
        if self.world.is_main:
            with (self.run_dir / "transcripts.jsonl").open("a") as f:
                for t in (t for result in results for t in result.transcripts):
                    f.write(json.dumps(t) + "\n")
        return {k: v for result in results for k, v in result.metrics.items()}

    # ---- the loop -------------------------------------------------------------------
    def train(self) -> None:
        cfg = self.cfg
        start = time.perf_counter()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", ncols=PROGRESS_WIDTH,
                   disable=os.environ.get("SELFPLAY_NO_PROGRESS") == "1" or not self.world.is_main)
        last_eval: dict = {}  # shown until the next evaluation
        if self.policy.staleness and self.step < cfg.steps:
            self._start_pipeline()
        try:
            while self.step < cfg.steps:
                metrics = self.train_step()
                self.step += 1
                if self.evaluates_after(self.step):
                    self._quiet()
                    metrics.update(self.evaluate())
                metrics["time/elapsed_s"] = time.perf_counter() - start
                if self.logger:
                    self.logger.log(self.step, metrics)
                out_of_time = (cfg.time_limit_minutes is not None
                               and metrics["time/elapsed_s"] > cfg.time_limit_minutes * 60)
                if self.world.active:  # process 0's clock decides for all
                    out_of_time = distributed.agree(out_of_time)
                if self.saves_after(self.step) or out_of_time:
                    self._quiet()  # (a time limit's stop drops the batches already sampled beyond it)
                    self.save()
                last_eval.update({k: v for k, v in metrics.items() if k.startswith("eval/")})
                bar.set_postfix_str(fit(progress_fields({**last_eval, **metrics}), PROGRESS_WIDTH - 50), refresh=False)
                bar.update(1)
                if out_of_time:
                    tqdm.write(f"time limit of {cfg.time_limit_minutes} min reached at step {self.step}")
                    break
                if self.pipeline:  # the new weights may now sample
                    self.pipeline.release(self.step)
        finally:
            if self.pipeline:
                self.pipeline.close()
            bar.close()
            if self.logger:
                self.logger.close()
            self.recipe.close()

    # ---- checkpoints ------------------------------------------------------------------
    def save(self) -> Path | None:
        """Write a checkpoint (process 0 only: every process holds the same state)."""
        if not self.world.is_main:
            return None

        def write(folder: Path) -> None:
            self.policy.save(folder)
            torch.save({
                "step": self.step,
                "optimizer": self.learner.state_dict(),
                "policy": self.policy.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
                "numpy_rng": np.random.get_state(),
            }, folder / "trainer_state.pt")
            self.recipe.save(folder)

        return write_checkpoint(self.run_dir, self.step, write, self.cfg.keep_last)

    def _load_state(self, ckpt: Path) -> None:
        state = torch.load(ckpt / "trainer_state.pt", weights_only=False)  # our own file, never a model's
        self.step = state["step"]
        self.learner.load_state_dict(state["optimizer"])
        self.policy.load_state_dict(state["policy"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        np.random.set_state(state["numpy_rng"])
        self.recipe.load(ckpt)


def progress_fields(metrics: dict) -> dict:
    """What the live line shows: the latest `eval/.../win|non_loss|exploitability|accuracy`
    first, then the invalid rate and the response length."""
    out = {}
    for key, value in metrics.items():
        if key.startswith("eval/") and key.endswith(("/win", "/exploitability", "/non_loss", "/accuracy")):
            out[key.removeprefix("eval/")] = f"{value:.2f}"
    short = {"invalid_rate": "inv", "response_length": "len"}
    out.update({v: f"{metrics[k]:.2f}" for k, v in short.items() if k in metrics})
    return out


def fit(fields: dict, width: int) -> str:
    """`key=value` pairs in at most `width` characters: keys cut to their last two parts
    (`vs_minimax/win` -> `minimax/win`), then as many pairs as fit."""
    parts, used = [], 0
    for key, value in fields.items():
        part = f"{'/'.join(key.split('/')[-2:]).removeprefix('vs_')}={value}"
        cost = len(part) + (2 if parts else 0)  # ", " before every pair but the first
        if used + cost > width:
            continue
        parts.append(part)
        used += cost
    return ", ".join(parts)
