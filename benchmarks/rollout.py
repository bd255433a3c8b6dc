"""Rollout speed: continuous batching vs the original lockstep loop, and collection
throughput vs the model's plain batched `generate`, all in one run on one model.

    python benchmarks/rollout.py [--config spiral_tictactoe_tiny] [--warmup-steps 200] [--batch 64] [--samples 4096]
    python benchmarks/rollout.py --config spiral_tictactoe_smollm2 --resume RUN_DIR --batch 32 --samples 192 \
                                 --repeats 1 --no-synthetic       # the real model, as a finished run left it
    ... --set recipe.prompt=paper --set sampling.max_new_tokens=256  # any config override

1. A short self-play warm-up of the preset (default: TicTacToe; `spiral_multigame_tiny`
   mixes three games) trains the tiny model until it plays mostly valid moves, so games
   have their natural, varying lengths (a random model ends every game on move 1).
   `--resume RUN_DIR` starts from that run's last checkpoint instead (no warm-up).
2. Turn samples per second, collecting the same number of samples with the same model:
   `lockstep` (all games start together, the batch shrinks as they end: the original
   SPIRAL loop) vs `continuous` (round scheduling: a finished game is replaced at once)
   vs `token` (token scheduling: a game also moves on as soon as its own answer ends),
   with forward passes per sample. Also the turns per round of lockstep and continuous:
   their ratio is what continuous batching would gain if a round cost the same whatever
   its size (the bound; a cost that grows with the round only lowers it).
3. Generated tokens per second during collection with the preset's scheduling vs
   `model.generate` on a full batch of the same size, prompt length and number of new
   tokens (one-game presets: a mixture's games have different generation limits). And the
   preset's scheduling with every prompt run whole (`sampling.reuse_prefix=false`) against
   the default, which runs the prompt prefix the games share once per batch.
4. Answers of ragged lengths (sampling, a quarter of the vocabulary stops a row, up to
   64 new tokens): the generator dropping stopped rows from the batch vs stepping them
   to the end as `model.generate` does; and the same ragged answers as the games' moves,
   collected with round scheduling (a round lasts as long as its longest answer) vs token
   scheduling (a game moves on when its own answer ends): samples per second and forward
   passes per sample (what an accelerator, where a forward pass costs about the same for
   any number of rows, would be bound by). `--no-synthetic` skips this part.
Figures are ratios against baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import replace

import torch

from selfplay.config import load_config
from selfplay.recipes.spiral import SpiralRecipe
from selfplay.trainer import Trainer
from selfplay.trainer_cli import resolve_preset


def collect_rate(trainer: Trainer, recipe_cfg, lockstep: bool, batch: int, samples: int, seed: int,
                 sampling=None, scheduling: str = "round", reuse_prefix: bool = True):
    """Collect with a fresh SPIRAL recipe on the trained policy (its own seed, `batch` games in flight)."""
    trainer.policy.generator.reuse_prefix = reuse_prefix
    context = replace(trainer.recipe.context, seed=seed, sampling=sampling or trainer.recipe.context.sampling)
    recipe = SpiralRecipe(recipe_cfg.model_copy(update={"parallel_games": batch, "scheduling": scheduling}),
                          trainer.policy, context)
    sched, batcher = recipe.scheduler, recipe.scheduler.batcher
    sched.lockstep = lockstep
    sched.collect(batch)  # warm caches
    calls0, tokens0, rounds0 = batcher.calls, batcher.generated_tokens, sched.rounds
    forwards = []
    hook = trainer.policy.generator.model.register_forward_hook(lambda *_: forwards.append(1))
    start = time.perf_counter()
    got, _ = sched.collect(samples)
    seconds = time.perf_counter() - start
    hook.remove()
    trainer.policy.generator.reuse_prefix = True
    calls, rounds = batcher.calls - calls0, sched.rounds - rounds0
    return {"samples_per_s": len(got) / seconds, "tokens_per_s": (batcher.generated_tokens - tokens0) / seconds,
            "mean_batch": len(got) / max(calls, 1), "per_round": len(got) / max(rounds, 1),
            "forwards_per_sample": len(forwards) / len(got),
            "prompt_len": statistics.mean(len(s.prompt_ids) for s in got)}


def plain_generate_rate(trainer: Trainer, batch: int, prompt_len: int, new_tokens: int, repeats: int = 20,
                        seconds: float = 10.0) -> float:
    """Tokens/s of `generate` on a full batch: `repeats` calls, or fewer once `seconds` have passed."""
    model, tok = trainer.policy.model, trainer.policy.tokenizer
    ids = torch.randint(5, len(tok), (batch, prompt_len))
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, top_k=0,
                  pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        start, calls = time.perf_counter(), 0
        while calls < repeats and (calls == 0 or time.perf_counter() - start < seconds):
            model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
            calls += 1
    return batch * new_tokens * calls / (time.perf_counter() - start)


def ragged_stop_ids(tokenizer) -> tuple[int, ...]:
    """A quarter of the vocabulary ends an answer: answers of ragged lengths (mean about 4)."""
    return tuple(range(3, len(tokenizer), 4))


def ragged_rate(trainer: Trainer, batch: int, drop: bool, repeats: int = 5) -> float:
    """Generated tokens per second when answers stop at different lengths."""
    from selfplay.models import HFGenerator, SamplingParams

    tok = trainer.policy.tokenizer
    generator = HFGenerator(trainer.policy.model, tok, drop_stopped_rows=drop)
    params = SamplingParams(1.0, 1.0, 64, stop_token_ids=ragged_stop_ids(tok))
    prompts = [torch.randint(5, len(tok), (12,)).tolist() for _ in range(batch)]
    generator.generate(prompts, params, seed=0)
    start, tokens = time.perf_counter(), 0
    for r in range(repeats):
        tokens += sum(len(g.response_ids) for g in generator.generate(prompts, params, seed=r))
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="spiral_tictactoe_tiny", help="a preset name or YAML file")
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", default=None, help="a run folder: measure its last checkpoint (no warm-up)")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic ragged-answer part (4.)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override, e.g. recipe.prompt=paper (repeatable)")
    args = parser.parse_args()

    from selfplay.runs import latest_checkpoint

    checkpoint = latest_checkpoint(args.resume) if args.resume else None
    steps = 0 if checkpoint else args.warmup_steps
    cfg = load_config(resolve_preset(args.config),
                      [f"steps={max(steps, 1)}", "eval.every=0", f"threads={args.threads}",
                       "save_every=100000", "output_dir=/tmp/selfplay-bench-rollout", "time_limit_minutes=null",
                       *args.set])
    trainer = Trainer(cfg, cfg.output_dir, resume_from=checkpoint)
    names = ", ".join(g.name for g in cfg.recipe.games)
    if checkpoint:
        print(f"measuring {checkpoint} ({cfg.model.name}, {cfg.recipe.style})", flush=True)
    else:
        print(f"warm-up: {steps} self-play steps on {names} ({cfg.model.name}, {cfg.recipe.style})...", flush=True)
        trainer.train()
    games = cfg.recipe.games

    preset_mode = "token" if cfg.recipe.scheduling == "token" else "continuous"
    # mode: (lockstep, scheduling, reuse_prefix)
    modes = {"lockstep": (True, "round", True), "continuous": (False, "round", True), "token": (False, "token", True),
             "whole": (False, cfg.recipe.scheduling, False)}
    rows = {mode: [] for mode in modes}
    for r in range(args.repeats):
        for mode, (lockstep, scheduling, reuse_prefix) in modes.items():
            rows[mode].append(collect_rate(trainer, cfg.recipe, lockstep, args.batch, args.samples,
                                           seed=100 + r, scheduling=scheduling, reuse_prefix=reuse_prefix))
    best = {mode: max(rs, key=lambda x: x["samples_per_s"]) for mode, rs in rows.items()}
    prompt_len = round(best["continuous"]["prompt_len"])
    plain = None
    if len(games) == 1:
        plain = max(plain_generate_rate(trainer, args.batch, prompt_len, games[0].max_new_tokens
                                        or cfg.sampling.max_new_tokens) for _ in range(args.repeats))

    print(f"\nmachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"batch {args.batch}, {args.samples} samples per measurement, best of {args.repeats}")
    print(f"{'mode':<12}{'samples/s':>12}{'tokens/s':>12}{'mean batch':>12}{'turns/round':>13}{'fwd/sample':>12}")
    for mode, b in best.items():
        print(f"{mode:<12}{b['samples_per_s']:>12.2f}{b['tokens_per_s']:>12.0f}{b['mean_batch']:>12.1f}"
              f"{b['per_round']:>13.1f}{b['forwards_per_sample']:>12.2f}")
    if plain is not None:
        print(f"{'generate':<12}{'':>12}{plain:>12.0f}{args.batch:>12}")
    print(f"\ngames: {names}")
    print(f"continuous / lockstep samples per second:        {best['continuous']['samples_per_s'] / best['lockstep']['samples_per_s']:.2f}x")
    # If a round cost the same however many turns it holds (the ideal accelerator), the
    # speed-up would be this ratio; a round's cost growing with its size only lowers it.
    print(f"  bound: continuous / lockstep turns per round:   {best['continuous']['per_round'] / best['lockstep']['per_round']:.2f}x")
    print(f"token / lockstep samples per second:             {best['token']['samples_per_s'] / best['lockstep']['samples_per_s']:.2f}x")
    print(f"{preset_mode}, shared prompt prefix run once / every prompt run whole (the `whole` row): "
          f"{best[preset_mode]['samples_per_s'] / best['whole']['samples_per_s']:.2f}x samples/s")
    if plain is not None:
        print(f"{preset_mode} collection tokens/s / plain model.generate: "
              f"{best[preset_mode]['tokens_per_s'] / plain:.2f}")
    if args.no_synthetic:
        return
    dropped = max(ragged_rate(trainer, args.batch, True) for _ in range(args.repeats))
    stepped = max(ragged_rate(trainer, args.batch, False) for _ in range(args.repeats))
    print(f"ragged answers, tokens/s: stopped rows dropped {dropped:.0f}, stepped to the end {stepped:.0f}")
    # The same ragged answers as the games' moves: round vs token-level scheduling
    ragged = replace(trainer.recipe.context.sampling, max_new_tokens=64,
                     stop_token_ids=ragged_stop_ids(trainer.policy.tokenizer))
    ragged_games = cfg.recipe.model_copy(update={"games": [g.model_copy(update={"max_new_tokens": None})
                                                           for g in games]})
    sched_rows = {mode: max((collect_rate(trainer, ragged_games, False, args.batch, args.samples // 2, 200 + r,
                                          ragged, mode) for r in range(args.repeats)),
                            key=lambda x: x["samples_per_s"]) for mode in ("round", "token")}
    for mode, b in sched_rows.items():
        print(f"ragged answers in games, {mode} scheduling: {b['samples_per_s']:.0f} samples/s, "
              f"{b['forwards_per_sample']:.3f} forward passes per sample")
    print(f"ragged answers, dropping stopped rows / stepping:  {dropped / stepped:.2f}x")
    r, t = sched_rows["round"], sched_rows["token"]
    print(f"ragged answers in games, token / round scheduling: {t['samples_per_s'] / r['samples_per_s']:.2f}x "
          f"samples/s, {r['forwards_per_sample'] / t['forwards_per_sample']:.2f}x fewer forward passes")


if __name__ == "__main__":
    main()
