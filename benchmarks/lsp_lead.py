"""When is an LSP Challenger ahead of its Solver? Every evaluation of the given runs, pooled and
binned by the Solver's held-out accuracy at that evaluation.

    python benchmarks/lsp_lead.py RUN_DIR [RUN_DIR ...] [--bins 0,0.1,0.3,0.5,0.7,0.9,1]

For each bin: how many evaluations fall in it, the mean of (Solver's accuracy on the Challenger's
fresh queries - its held-out accuracy), greedy and sampled as in training (`recipe.eval_sampled`),
the share of evaluations with the fresh queries below the held-out set, and the two parts of the
difference: fresh - uniform (how much the Challenger picks what the Solver fails, among the training
problems it may ask) and uniform - held-out (how much better the Solver does on training problems
than on problems it never trains on). A Challenger ahead of its Solver shows as a negative first
column; it is ahead at a given minute only where its pick outweighs the Solver's training advantage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# (fresh queries, held-out set, training problems drawn uniformly) per reading of the answers
GREEDY = ("eval/lsp/fresh_accuracy", "eval/arithmetic/accuracy", "eval/lsp/uniform_accuracy")
SAMPLED = ("eval/lsp/fresh_sampled_accuracy", "eval/lsp/held_out_sampled_accuracy", "eval/lsp/uniform_sampled_accuracy")


def evaluations(run_dir: Path) -> list[dict]:
    """The evaluations of a run (its metrics.jsonl rows with a fresh-query accuracy)."""
    with open(Path(run_dir) / "metrics.jsonl") as f:
        return [row for row in map(json.loads, f) if GREEDY[0] in row]


def lead(rows: list[dict], bins: list[float]) -> list[dict]:
    """Per bin [low, high) of held-out accuracy (the last bin includes 1.0): the evaluations in it
    and their mean differences, greedy, and sampled where every row of the bin has them."""
    out = []
    for low, high in zip(bins, bins[1:]):
        last = high == bins[-1]
        group = [r for r in rows if low <= r[GREEDY[1]] < high or (last and r[GREEDY[1]] == high)]
        if not group:
            continue
        n = len(group)

        def mean(f) -> float:
            return round(sum(map(f, group)) / n, 3)

        fresh, held_out, uniform = GREEDY
        row = {"held_out": [low, high], "evaluations": n,
               "fresh_minus_held_out": mean(lambda r: r[fresh] - r[held_out]),
               "fresh_below_held_out": mean(lambda r: r[fresh] < r[held_out]),
               "fresh_minus_uniform": mean(lambda r: r[fresh] - r[uniform]),
               "uniform_minus_held_out": mean(lambda r: r[uniform] - r[held_out])}
        if all(SAMPLED[0] in r for r in group):
            fresh, held_out, _ = SAMPLED
            row["sampled_fresh_minus_held_out"] = mean(lambda r: r[fresh] - r[held_out])
            row["sampled_fresh_below_held_out"] = mean(lambda r: r[fresh] < r[held_out])
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="LSP run folders (each with a metrics.jsonl)")
    parser.add_argument("--bins", default="0,0.1,0.3,0.5,0.7,0.9,1", help="bin edges of held-out accuracy")
    args = parser.parse_args()
    try:
        bins = [float(edge) for edge in args.bins.split(",")]
    except ValueError:
        parser.error(f"--bins: comma-separated numbers, got {args.bins!r}")
    if len(bins) < 2 or bins != sorted(bins):
        parser.error(f"--bins: at least two edges, in increasing order, got {args.bins!r}")
    missing = [str(run) for run in args.runs if not (run / "metrics.jsonl").is_file()]
    if missing:
        parser.error(f"no metrics.jsonl in {', '.join(missing)}")
    rows = [row for run in args.runs for row in evaluations(run)]
    for row in lead(rows, bins):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
