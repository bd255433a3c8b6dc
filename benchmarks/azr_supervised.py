"""How far can the AZR tiny preset's model get on its held-out tasks when it is simply shown the
answers? The ceiling the self-play run is measured against.

    python benchmarks/azr_supervised.py [--minutes 15] [--model tiny-128] [--lr 1e-3] [--batch 256]

The same model (random weights, seed 0), prompts and held-out tasks as `azr_tiny`
(`SD:a*3+1|5=` -> `16`, `SA:a*3+1=16|` -> `5`; 64 held-out programs per type, one input each),
trained with cross-entropy on the correct answers of every other expression of the held-out
bank's grammar (one or two operators, constants 1-9, inputs 0-9), for the same wall-clock time
and one thread. Prints the greedy held-out solve rates of the initial model and then at every
evaluation, with 95% intervals. If supervised learning cannot reach a target in the time, the
data-free run cannot either.

Answers are computed and checked by the program bank's own evaluator of these expressions (the
project's, not model-written, code); a model's answer is only ever read as an integer.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time

import torch

from selfplay.evals.program_bank import compact_expressions, compact_programs, compact_value
from selfplay.evals.stats import wilson
from selfplay.models.loading import build_tiny_model
from selfplay.tasks.programs import CompactStyle, ProgramTask

EVAL_SIZE = 64  # held-out tasks per type, as azr_tiny's eval_size
MAX_OUTPUT_CHARS = 3  # the held-out outputs' longest (azr_tiny's solve_max_new_tokens is 4 with the stop)


def prompt(kind: str, expr: str, a: int, y: int) -> str:
    """The preset's solver prompt (`SD:a*3+1|5=`, `SA:a*3+1=16|`)."""
    return CompactStyle().solve_prompt(kind, ProgramTask(expr, (str(a),), (str(y),)), 1)


def held_out() -> dict[str, list[tuple[str, int, int]]]:
    """(expression, input, output) per type: the recipe's held-out tasks (program bank thirds,
    each program's first input)."""
    bank = compact_programs(3 * EVAL_SIZE)
    return {kind: [(expr, int(xs[0]), compact_value(expr, int(xs[0]))) for expr, xs in bank[k::3]]
            for k, kind in enumerate(("deduction", "abduction"))}


def training_examples(excluded: set[str]) -> list[tuple[str, str]]:
    """(prompt, answer) for every other expression and input: deduction and abduction."""
    examples = []
    for expr in compact_expressions():
        if expr in excluded:
            continue
        for a in range(10):
            out = compact_value(expr, a)
            if len(str(out)) <= MAX_OUTPUT_CHARS:
                examples += [(prompt("deduction", expr, a, out), str(out)), (prompt("abduction", expr, a, out), str(a))]
    return examples


def batch_tensors(tokenizer, pairs: list[tuple[str, str]]):
    """Right-padded ids with labels on the answer and its end-of-text token only."""
    rows = [(tokenizer(p, add_special_tokens=False)["input_ids"],
             tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]) for p, a in pairs]
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, a) in enumerate(rows):
        ids[i, :len(p) + len(a)] = torch.tensor(p + a)
        labels[i, len(p):len(p) + len(a)] = torch.tensor(a)
        mask[i, :len(p) + len(a)] = 1
    return ids, labels, mask


@torch.no_grad()
def solve_rates(model, tokenizer, tasks) -> dict[str, dict]:
    """Greedy answers to the held-out tasks, graded: deduction by the exact integer, abduction
    by any input (a non-negative integer) that gives the output."""
    model.eval()
    tokenizer.padding_side = "left"
    results = {}
    for kind, items in tasks.items():
        enc = tokenizer([prompt(kind, *item) for item in items], add_special_tokens=False, return_tensors="pt",
                        padding=True)
        out = model.generate(**enc, max_new_tokens=MAX_OUTPUT_CHARS + 1, do_sample=False)
        answers = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        right = 0
        for (expr, a, y), answer in zip(items, answers):
            answer = answer.strip()
            if kind == "deduction":
                right += answer == str(y)
            else:
                right += answer.isdigit() and len(answer) <= 2 and compact_value(expr, int(answer)) == y
        low, high = wilson(right, len(items))
        results[kind] = {"solve_rate": round(right / len(items), 3), "ci95": [round(low, 3), round(high, 3)],
                         "distinct_answers": len({a.strip() for a in answers})}
    model.train()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--model", default="tiny-128")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--eval-every", type=int, default=200, help="steps between evaluations")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the preset
    torch.manual_seed(args.seed)

    model, tokenizer = build_tiny_model(args.model, seed=args.seed)
    tasks = held_out()
    examples = training_examples({e for e, _ in compact_programs(3 * EVAL_SIZE)})  # every type's held-out programs
    rng = random.Random(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    print(f"{len(examples):,} training examples; machine {platform.processor() or platform.machine()}, 1 thread")
    print(json.dumps({"step": 0, "minutes": 0.0, **solve_rates(model, tokenizer, tasks)}), flush=True)

    start, step, seen = time.monotonic(), 0, 0
    while time.monotonic() - start < 60 * args.minutes:
        ids, labels, mask = batch_tensors(tokenizer, rng.sample(examples, args.batch))
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step, seen = step + 1, seen + args.batch
        if step % args.eval_every == 0:
            print(json.dumps({"step": step, "minutes": round((time.monotonic() - start) / 60, 1),
                              "examples_seen": seen, "loss": round(loss.item(), 3),
                              **solve_rates(model, tokenizer, tasks)}), flush=True)
    print(json.dumps({"final": True, "step": step, "minutes": round((time.monotonic() - start) / 60, 1),
                      "examples_seen": seen, **solve_rates(model, tokenizer, tasks)}), flush=True)


if __name__ == "__main__":
    main()
