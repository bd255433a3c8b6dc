"""The SPIRAL training loop: collect -> advantages -> update -> eval -> checkpoint -> log.

Everything a run produces lives in its run folder:
    config.yaml            the resolved config
    metrics.jsonl          one row per step; tensorboard/ the same as events
    transcripts.jsonl      a few games per evaluation, for `selfplay report`
    checkpoints/step-N/    the model in Hugging Face format (safetensors; the fp32 master
                           weights when model.dtype is bf16) + tokenizer
                           (with `optim.average_decay`, the averaged weights; the online
                           weights the learner trains are in step-N/online/)
                           + trainer_state.pt (optimizer, RAE baselines, torch RNG, step)
                           + rollout.json (games in flight, as replayable action lists)
    opponents/step-N/      with `rollout.past_opponents`: the policy's snapshot at step N,
                           written once; kept while the pool or a kept checkpoint uses it
A checkpoint is written to a temporary folder and renamed into place, so a crash never
leaves a half-written one where `--resume` would find it.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import transformers
from tqdm import tqdm

from selfplay.agents import make_agent
from selfplay.agents.llm import GamePrompter, LLMAgent
from selfplay.algorithms.averaging import WeightAverage
from selfplay.algorithms.advantages import RAEBaselines, drop_zero_advantage, rae_advantages, raw_advantages
from selfplay.algorithms.learner import Learner
from selfplay.config import TrainConfig, save_config
from selfplay.metrics import MetricsLogger
from selfplay.models import HFGenerator, SamplingParams, load_model, save_checkpoint
from selfplay.models.loading import resolve_device, resolve_dtype
from selfplay.rollout.scheduler import FIXED, GameChoice, RolloutScheduler
from selfplay.runs import CHECKPOINTS, checkpoints

ONLINE = "online"  # with weight averaging: the checkpoint's subfolder of the online weights
OPPONENTS = "opponents"  # the run folder's snapshots of past policies (rollout.past_opponents)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path, resume_from: Path | None = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        transformers.utils.logging.disable_progress_bar()  # one bar: ours (not one per checkpoint)
        seed_everything(cfg.seed)
        save_config(cfg, self.run_dir / "config.yaml")

        # Mixed precision: the learner's (master) weights are fp32 unless optim.master_weights=model;
        # forward passes and generation run in model.dtype (bf16 on a GPU, fp32 on the CPU).
        self.compute_dtype = resolve_dtype(cfg.model.dtype, resolve_device(cfg.model.device))
        master_dtype = torch.float32 if cfg.optim.master_weights == "float32" else self.compute_dtype
        self.mixed_precision = master_dtype != self.compute_dtype
        # A checkpoint written with weight averaging holds the average; the online weights are in online/.
        averaged_ckpt = resume_from is not None and (resume_from / ONLINE).is_dir()
        source = resume_from / ONLINE if averaged_ckpt else resume_from or cfg.model.name
        self.model, self.tokenizer = load_model(str(source), dtype=master_dtype, device=cfg.model.device,
                                                seed=cfg.seed)
        # Polyak averaging: the learner trains self.model; evaluation and checkpoints use the average
        # (kept in the master dtype: in bf16 the average's small steps would round away too).
        self.average = None
        if cfg.optim.average_decay:
            average_model = (load_model(str(resume_from), dtype=master_dtype, device=cfg.model.device)[0]
                             if averaged_ckpt else copy.deepcopy(self.model))
            self.average = WeightAverage(average_model, cfg.optim.average_decay)
        # The frozen initial policy: KL reference and/or the `frozen` opponent.
        self.reference = None
        if cfg.optim.kl_coef > 0 or cfg.rollout.opponent == "frozen":
            self.reference, _ = load_model(cfg.model.name, dtype=cfg.model.dtype, device=cfg.model.device,
                                           seed=cfg.seed)
            self.reference.eval().requires_grad_(False)
        if cfg.backend != "hf":
            raise NotImplementedError(f"backend {cfg.backend!r} is not available yet; use backend=hf")
        # The generator samples with its own model-dtype copy when the master weights are fp32
        # (refreshed after every update, as a vLLM engine would be); else it shares self.model.
        self.generator = self._generator(self._inference_copy(self.model) if self.mixed_precision else self.model)
        self.eval_generator = self._generator(self.policy) if self.average else self.generator
        # stop_token_ids=None: the tokenizer's EOS and the chat template's end-of-turn
        self.sampling = SamplingParams(cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.max_new_tokens)
        self.eval_sampling = SamplingParams(cfg.eval.temperature, cfg.rollout.top_p, cfg.rollout.max_new_tokens)
        self.prompter = GamePrompter(self.tokenizer, cfg.model.use_chat_template)

        self.learner = Learner(
            self.model, lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay,
            grad_clip=cfg.optim.grad_clip, epochs=cfg.optim.epochs, micro_batch_size=cfg.optim.micro_batch_size,
            loss_norm=cfg.optim.loss_norm, norm_constant=cfg.optim.norm_constant or cfg.rollout.max_new_tokens,
            clip=cfg.optim.clip, kl_coef=cfg.optim.kl_coef, ref_model=self.reference,
            entropy_coef=cfg.optim.entropy_coef, entropy_over=cfg.optim.entropy_over,
            autocast_dtype=self.compute_dtype if self.mixed_precision else None,
            gradient_checkpointing=cfg.optim.gradient_checkpointing,
        )
        self.scheduler = RolloutScheduler(
            [GameChoice(g.name, g.options, g.weight, g.max_new_tokens) for g in cfg.games], cfg.style, self.generator,
            self.prompter, self.sampling, cfg.rollout.parallel_games, seed=cfg.seed,
            opponent=self._make_opponent(cfg.rollout.opponent),
            legal_token_ids=self.learner.needs_legal_token_ids,
            past_fraction=cfg.rollout.past_opponents.fraction,
            random_opening_moves=cfg.rollout.random_opening_moves, scheduling=cfg.rollout.scheduling,
        )
        self.baselines = RAEBaselines(alpha=cfg.advantage.rae_alpha)
        self.step = 0
        if resume_from:
            self._load_state(resume_from)
        self.logger = MetricsLogger(self.run_dir, resume_step=self.step)

    def _make_opponent(self, spec: str):
        if spec == "self":
            return None
        if spec == "frozen":
            return self._model_opponent(self.reference, seed=self.cfg.seed + 1)
        return make_agent(spec, seed=self.cfg.seed + 1)

    def _model_opponent(self, model, seed: int) -> LLMAgent:
        """A frozen model as the rollout's opponent, sampling as the learner does."""
        return LLMAgent(model, self.tokenizer, self._generator(model), self.sampling,
                        seed=seed, use_chat_template=self.cfg.model.use_chat_template)

    def _generator(self, model) -> HFGenerator:
        return HFGenerator(model, self.tokenizer, max_batch_size=self.cfg.rollout.generation_batch_size)

    def _inference_copy(self, model):
        """A frozen copy of `model` in the compute dtype, for sampling."""
        return copy.deepcopy(model).to(self.compute_dtype).eval().requires_grad_(False)

    def snapshot_opponent(self) -> None:
        """Add the current policy to the pool of past opponents (written to opponents/step-N
        so a resumed run reloads the same pool) and drop the oldest beyond `keep`."""
        key = f"step-{self.step:06d}"
        save_checkpoint(self.policy, self.tokenizer, self.run_dir / OPPONENTS / key)  # atomic
        snapshot = self._inference_copy(self.policy)
        self.scheduler.add_past_opponent(key, self._model_opponent(snapshot, seed=self.cfg.seed + self.step),
                                         self.cfg.rollout.past_opponents.keep)

    # ---- one step -------------------------------------------------------------------
    def train_step(self) -> dict:
        cfg = self.cfg
        t0 = time.perf_counter()
        tokens0 = self.scheduler.generated_tokens
        self.model.eval()
        samples, episodes = self.scheduler.collect(cfg.rollout.samples_per_step)
        t_collect = time.perf_counter() - t0

        if cfg.advantage.estimator == "rae":
            rae_advantages(samples, self.baselines)
        else:
            raw_advantages(samples)
        trained = drop_zero_advantage(samples) if cfg.advantage.drop_zero_advantage else samples

        t1 = time.perf_counter()
        lr = self.learning_rate()
        for group in self.learner.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        stats = self.learner.update(trained) if trained else {}
        self.model.eval()
        # the new weights into the generator (None: it shares the learner's model)
        self.generator.load_weights(self.model.state_dict() if self.mixed_precision else None)
        if self.average:
            self.average.update(self.model)
        t_update = time.perf_counter() - t1

        n_tokens = [len(s.response_ids) for s in samples]
        metrics = {
            "samples": len(samples),
            "episodes": len(episodes),
            "response_length": float(np.mean(n_tokens)),
            "truncation_rate": float(np.mean([s.truncated for s in samples])),
            # share of episodes the learner ended with an invalid move, and of its moves
            "invalid_rate": float(np.mean([e.invalid_by_learner for e in episodes])) if episodes else 0.0,
            "invalid_move_rate": float(np.mean(["invalid" in s.info for s in samples])),
            "game_length": float(np.mean([e.length for e in episodes])) if episodes else 0.0,
            "advantage_abs": float(np.mean([abs(s.advantage) for s in samples])),
            "lr": lr,
            "time/collect_s": t_collect,
            "time/update_s": t_update,
            "throughput/samples_per_s": len(samples) / max(t_collect, 1e-9),
            "throughput/tokens_per_s": (self.scheduler.generated_tokens - tokens0) / max(t_collect, 1e-9),
        }
        for e_game in sorted({e.game_name for e in episodes}):
            eps = [e for e in episodes if e.game_name == e_game and e.opponent is None]
            # In self-play the learner holds both seats: seat 0's result says who the game favours.
            if eps:
                metrics[f"selfplay/{e_game}/seat0_return"] = float(np.mean([e.returns[0] for e in eps]))
            past = [e.returns[e.learner_seats[0]] for e in episodes
                    if e.game_name == e_game and e.opponent not in (None, FIXED)]
            if past:  # how the learner fares against its past snapshots
                metrics[f"past_opponents/{e_game}/learner_return"] = float(np.mean(past))
        if cfg.rollout.past_opponents.fraction:
            metrics["past_opponents/pool"] = len(self.scheduler.past_pool)
        for (game, role), b in sorted(self.baselines.values.items()):
            metrics[f"rae_baseline/{game}/{role}"] = b
        metrics.update({f"loss/{k}": v for k, v in stats.items()})
        return metrics

    def learning_rate(self) -> float:
        """The learning rate of the step about to be taken (a pure function of the step,
        so a resumed run follows the same schedule)."""
        optim = self.cfg.optim
        if optim.lr_schedule == "constant":
            return optim.lr
        progress = self.step / max(self.cfg.steps - 1, 1)
        return optim.lr * (1 - (1 - optim.lr_final_fraction) * progress)

    @property
    def policy(self):
        """The model a user gets from this run: the weight average when averaging is on."""
        return self.average.model if self.average else self.model

    def agent(self, sampling: SamplingParams | None = None, seed: int | None = None,
              online: bool = False) -> LLMAgent:
        """The run's policy as an arena agent (the weight average when averaging is on;
        `online=True`: the weights the learner trains)."""
        model, generator = (self.model, self.generator) if online else (self.policy, self.eval_generator)
        return LLMAgent(model, self.tokenizer, generator, sampling or self.eval_sampling, seed=seed,
                        use_chat_template=self.cfg.model.use_chat_template)

    # ---- evaluation -------------------------------------------------------------------
    def evaluate(self) -> dict:
        from selfplay.evals.arena import play_match

        cfg = self.cfg
        out, transcripts = {}, []
        for spec in cfg.games:
            sampling = replace(self.eval_sampling, max_new_tokens=spec.max_new_tokens or cfg.rollout.max_new_tokens)
            agent = self.agent(sampling, seed=cfg.seed + 10_000 + self.step)
            opponents = ["random"] + ([spec.eval_opponent] if spec.eval_opponent else [])
            for opp in opponents:
                result = play_match(
                    agent, make_agent(opp), game=spec.name, games=cfg.eval.games,
                    game_options={"style": cfg.style, **spec.options}, seed=cfg.seed + self.step,
                    progress=False, optimal_moves=spec.name == "tictactoe",
                )
                rates = result.rates()
                prefix = f"eval/{spec.name}/vs_{opp}/"
                for key in ("win", "draw", "loss", "invalid", "optimal_move_rate"):
                    if key in rates:
                        out[prefix + key] = rates[key]["rate"]
                out[prefix + "non_loss"] = rates["win"]["rate"] + rates["draw"]["rate"]
                transcripts += [{"step": self.step, "game": spec.name, "opponent": opp, **t}
                                for t in result.transcripts[:2]]
            if cfg.eval.exploitability and spec.name == "kuhn_poker" and spec.options.get("rounds", 5) == 1:
                from selfplay.evals.exploitability import exploitability

                options = {"style": cfg.style, **spec.options}
                out[f"eval/{spec.name}/exploitability"] = float(exploitability(agent, "kuhn_poker", options))
                if self.average:  # the policy the learner samples with, for comparison
                    online = self.agent(sampling, online=True)
                    out[f"eval/{spec.name}/exploitability_online"] = float(exploitability(online, "kuhn_poker",
                                                                                          options))
        with (self.run_dir / "transcripts.jsonl").open("a") as f:
            for t in transcripts:
                f.write(json.dumps(t) + "\n")
        return out

    # ---- the loop -------------------------------------------------------------------
    def train(self) -> None:
        cfg = self.cfg
        start = time.perf_counter()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", dynamic_ncols=True,
                   disable=os.environ.get("SELFPLAY_NO_PROGRESS") == "1")
        shown: dict = {}
        try:
            while self.step < cfg.steps:
                metrics = self.train_step()
                self.step += 1
                past = cfg.rollout.past_opponents
                if past.fraction and self.step % past.every == 0:
                    self.snapshot_opponent()
                if cfg.eval.every and (self.step % cfg.eval.every == 0 or self.step == cfg.steps):
                    metrics.update(self.evaluate())
                metrics["time/elapsed_s"] = time.perf_counter() - start
                self.logger.log(self.step, metrics)
                out_of_time = (cfg.time_limit_minutes is not None
                               and metrics["time/elapsed_s"] > cfg.time_limit_minutes * 60)
                if self.step % cfg.save_every == 0 or self.step == cfg.steps or out_of_time:
                    self.save()
                shown.update(_progress_fields(metrics))
                bar.set_postfix(shown, refresh=False)
                bar.update(1)
                if out_of_time:
                    tqdm.write(f"time limit of {cfg.time_limit_minutes} min reached at step {self.step}")
                    break
        finally:
            bar.close()
            self.logger.close()

    # ---- checkpoints ------------------------------------------------------------------
    def save(self) -> Path:
        final = self.run_dir / CHECKPOINTS / f"step-{self.step:06d}"
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_checkpoint(self.policy, self.tokenizer, tmp)
        if self.average:
            save_checkpoint(self.model, self.tokenizer, tmp / ONLINE)
        torch.save({
            "step": self.step,
            "optimizer": self.learner.state_dict(),
            "rae_baselines": self.baselines.state_dict(),
            "average": self.average.state_dict() if self.average else None,
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "numpy_rng": np.random.get_state(),
        }, tmp / "trainer_state.pt")
        (tmp / "rollout.json").write_text(json.dumps(self.scheduler.state_dict()))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in checkpoints(self.run_dir)[: -self.cfg.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        self._remove_unused_snapshots()
        return final

    def _remove_unused_snapshots(self) -> None:
        """Delete opponents/ snapshots that neither the pool nor a kept checkpoint plays."""
        folder = self.run_dir / OPPONENTS
        if not folder.is_dir():
            return
        used = set(self.scheduler.past_opponents)
        for ckpt in checkpoints(self.run_dir):
            used |= set(json.loads((ckpt / "rollout.json").read_text()).get("past_opponents", {}))
        for snapshot in folder.iterdir():
            if snapshot.name not in used:
                shutil.rmtree(snapshot, ignore_errors=True)

    def _load_state(self, ckpt: Path) -> None:
        state = torch.load(ckpt / "trainer_state.pt", weights_only=False)  # our own file, never a model's
        self.step = state["step"]
        self.learner.load_state_dict(state["optimizer"])
        self.baselines.load_state_dict(state["rae_baselines"])
        if self.average and state.get("average"):
            self.average.load_state_dict(state["average"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        np.random.set_state(state["numpy_rng"])
        rollout = json.loads((ckpt / "rollout.json").read_text())
        for key in rollout.get("past_opponents", {}):  # past opponents, as they were at the checkpoint
            snapshot, _ = load_model(str(ckpt.parent.parent / OPPONENTS / key), dtype=self.cfg.model.dtype,
                                     device=self.cfg.model.device)
            self.scheduler.past_opponents[key] = self._model_opponent(
                snapshot.eval().requires_grad_(False), seed=self.cfg.seed + int(key.removeprefix("step-")))
        self.scheduler.load_state_dict(rollout)


def _progress_fields(metrics: dict) -> dict:
    short = {"invalid_rate": "inv", "response_length": "len"}
    out = {v: f"{metrics[k]:.2f}" for k, v in short.items() if k in metrics}
    for key, value in metrics.items():
        if key.startswith("eval/") and key.endswith(("/win", "/exploitability", "/non_loss")):
            out[key.removeprefix("eval/")] = f"{value:.2f}"
    return out
