"""What does an LSP Challenger ask, and what does its Solver know outside it?

    python benchmarks/lsp_challenger.py RUN_DIR [--checkpoint step-004447] [--batches 40]

Loads a verifiable LSP run's checkpoint (the last by default), samples `batches` x N queries
from its Challenger as in training, and prints their support (distinct training sums asked, the
share held out, the most frequent) and the Solver's greedy accuracy on the sums it asks, weighted
as it asks them, against 300 training sums drawn uniformly, split into those inside the support
and those outside it. A Challenger that keeps to a corner of the family while its Solver fails the
rest shows as a high accuracy inside and a low one outside. `by_length` splits both by the
problem's length in characters (`3+5+7`: 5), for a family with an axis of difficulty (2-4
operands): the share of the valid queries of each length, the Solver on them, and the Solver on
the held-out problems of that length.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

from selfplay.config import load_config
from selfplay.models.generation import SamplingParams
from selfplay.models.policy import Policy
from selfplay.recipes import RecipeContext, recipe_class
from selfplay.recipes.lsp import HELD_OUT
from selfplay.tasks.evaluation import held_out_accuracy


def challenger_support(run_dir: Path, checkpoint: str | None = None, batches: int = 40, uniform: int = 300) -> dict:
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*"))
    if not checkpoints:
        raise SystemExit(f"{run_dir}: no checkpoints/step-* folder")
    folder = run_dir / "checkpoints" / checkpoint if checkpoint else checkpoints[-1]
    cfg = load_config(str(run_dir / "config.yaml"), [f"model.name={folder}"])
    if cfg.recipe.name != "lsp" or cfg.recipe.reward != "verifiable":
        raise SystemExit(f"{run_dir}: not an LSP run with a verifiable reward")
    policy = Policy(cfg.model, cfg.optim, cfg.sampling, cfg.seed)
    s = cfg.sampling
    context = RecipeContext(seed=cfg.seed, run_dir=run_dir, sampling=SamplingParams(s.temperature, s.top_p, s.max_new_tokens),
                            eval_sampling=SamplingParams(0.0, s.top_p, s.max_new_tokens))
    lsp = recipe_class("lsp")(cfg.recipe, policy, context)

    texts, checks = [], {}
    for k in range(batches):
        written = policy.generator.generate([lsp.challenger_prompt] * cfg.recipe.queries_per_step, lsp.query_sampling,
                                            seed=10_000 + k)
        for q in written:  # read as collect reads them
            text, checks[text] = lsp.read_query(q.text)
            texts.append(text)
    asked = Counter(texts)
    support = {text: n for text, n in asked.items() if checks[text][0]}
    right = dict(zip(support, solved(lsp, [checks[text][2] for text in support], cfg.seed)))

    held_right = solved(lsp, lsp.held_out, cfg.seed)
    by_length = {}
    for length in sorted({len(t) for t in support} | {len(p.text) for p in lsp.held_out}):
        asked_here = {t: n for t, n in support.items() if len(t) == length}
        held_here = [r for p, r in zip(lsp.held_out, held_right) if len(p.text) == length]
        by_length[length] = {
            "asked": sum(asked_here.values()) / max(sum(support.values()), 1),
            "accuracy_as_asked": sum(right[t] * n for t, n in asked_here.items()) / sum(asked_here.values())
            if asked_here else None,
            "held_out": (len(held_here), _mean(held_here)),
        }

    rng = random.Random(0)
    drawn = [lsp.task.sample(rng) for _ in range(uniform)]
    drawn_right = solved(lsp, drawn, cfg.seed)
    inside = [r for p, r in zip(drawn, drawn_right) if p.text in support]
    outside = [r for p, r in zip(drawn, drawn_right) if p.text not in support]
    return {
        "checkpoint": folder.name, "queries": len(texts), "distinct": len(asked), "distinct_training_sums": len(support),
        "valid": sum(support.values()) / len(texts),
        "held_out": sum(n for text, n in asked.items() if checks[text][1] == HELD_OUT) / len(texts),
        "most_asked": asked.most_common(10), "asked": dict(asked),
        "accuracy_as_asked": sum(right[t] * n for t, n in support.items()) / max(sum(support.values()), 1),
        "uniform": _mean(drawn_right),
        "uniform_inside": (len(inside), _mean(inside)),
        "uniform_outside": (len(outside), _mean(outside)),
        "held_out_accuracy": _mean(held_right),
        "by_length": by_length,
    }


def solved(lsp, problems: list, seed: int) -> list[bool]:
    """Whether the Solver's greedy answer to each problem is right: one batched call, graded as
    the held-out set is (its transcript rows carry each problem's score)."""
    if not problems:
        return []
    _, rows = held_out_accuracy(lsp.task, problems, lsp.task_prompt_ids, lsp.policy.eval_generator,
                                lsp.context.eval_sampling, seed, step=0, transcripts=len(problems))
    return [row["score"] == 1.0 for row in rows]


def _mean(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--checkpoint", help="a folder under RUN_DIR/checkpoints (default: the last)")
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args(argv)
    figures = challenger_support(args.run_dir, args.checkpoint, args.batches)
    del figures["asked"]  # every query: too long to print
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
