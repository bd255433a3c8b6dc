"""Learner speed: one PPO update with the prompt prefix each micro-batch shares run once
(`optim.share_prompt_prefix`, the default), or with each distinct prompt run once (`--share prompts`:
`optim.share_prompts`, the G answers to one prompt), against every prompt run whole, on the same samples.

    python benchmarks/learner.py [--config spiral_tictactoe_smollm2] [--share prefix|prompts] [--resume RUN_DIR]
                                 [--repeats 3] [--threads 2]

The preset collects one batch (from `--resume RUN_DIR`'s last checkpoint, or the initial
model); then the learner updates on it at learning rate 0 (the weights stay as they are, the
work is the same), alternating the two settings, and the best of `--repeats` of each is
reported with their ratio. Also: how many prompt tokens a micro-batch shares.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from selfplay.config import load_config
from selfplay.runs import latest_checkpoint
from selfplay.trainer import Trainer
from selfplay.trainer_cli import resolve_preset


def timed_update(trainer: Trainer, samples, share: str | None) -> float:
    learner = trainer.learner
    learner.share_prompt_prefix, learner.share_prompts = share == "prefix", share == "prompts"
    trainer.policy.model.train()
    start = time.perf_counter()
    learner.update(samples)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="spiral_tictactoe_smollm2", help="a preset name or YAML file")
    parser.add_argument("--share", choices=("prefix", "prompts"), default="prefix",
                        help="what runs once: the prefix all prompts share, or each distinct prompt")
    parser.add_argument("--resume", default=None, help="a run folder: collect with its last checkpoint")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides")
    args = parser.parse_args()

    checkpoint = latest_checkpoint(args.resume) if args.resume else None
    cfg = load_config(resolve_preset(args.config),
                      ["eval.every=0", f"threads={args.threads}", "save_every=100000", "time_limit_minutes=null",
                       "output_dir=/tmp/selfplay-bench-learner", *args.set])
    trainer = Trainer(cfg, cfg.output_dir, resume_from=checkpoint)
    trainer.policy.model.eval()
    _, samples, _ = trainer._collect_and_score(trainer.step)
    learner = trainer.learner
    if learner.checkpointed_layers:
        raise SystemExit("gradient checkpointing recomputes layers without a KV cache: nothing shares, nothing to compare")
    for group in learner.optimizer.param_groups:
        group["lr"] = 0.0  # the same work, the same weights for every repeat

    chunks = [samples[i:i + learner.micro_batch_size] for i in range(0, len(samples), learner.micro_batch_size)]
    learner.share_prompt_prefix = True
    shared = [learner._shared_prefix(list({tuple(s.prompt_ids) for s in chunk})) for chunk in chunks]
    distinct = [f"{len({tuple(s.prompt_ids) for s in chunk})} of {len(chunk)}" for chunk in chunks]
    prompt = statistics.mean(len(s.prompt_ids) for s in samples)
    response = statistics.mean(len(s.response_ids) for s in samples)

    timed_update(trainer, samples, args.share)  # warm up
    times = {None: [], args.share: []}
    for _ in range(args.repeats):
        for share in times:
            times[share].append(timed_update(trainer, samples, share))
    whole, once = min(times[None]), min(times[args.share])
    what = "shared prefix" if args.share == "prefix" else "each prompt"

    print(f"\nmachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads; "
          f"{cfg.model.name}, {len(samples)} samples in micro-batches of {learner.micro_batch_size}, "
          f"{learner.epochs} epoch(s), best of {args.repeats}")
    print(f"mean prompt {prompt:.0f} tokens, response {response:.1f}; shared per micro-batch: {shared}; "
          f"distinct prompts per micro-batch: {distinct}")
    print(f"update, every prompt whole:        {whole:8.3f} s")
    print(f"update, {what} run once:{' ' * (14 - len(what))}{once:8.3f} s")
    print(f"{what} once / whole: {whole / once:.2f}x updates/s")


if __name__ == "__main__":
    main()
