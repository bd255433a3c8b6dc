"""Does self-play learn on a CPU? The issue's learning targets, measured.

    python benchmarks/learning.py [--minutes M] [--only tictactoe,kuhn,ablation,rlvr] [--seeds 0,1,2]
                                  [--out runs/bench] [--set KEY=VALUE ...]   (config overrides for every run)

Runs, each with a wall-clock budget (`time_limit_minutes`; 10 minutes, RLVR 5, unless --minutes):
  tictactoe   the default `selfplay train` preset; then 1,000 greedy games against
              `random` and against `minimax` (targets: >= 85% wins vs random, <= 2%
              invalid moves, >= 50% non-losses vs minimax)
  kuhn        the Kuhn Poker tiny preset; exact exploitability of the final policy
              (target: <= 0.10; uniform random play is 0.458)
  ablation    the TicTacToe preset with RAE off (raw returns), for the plot beside RAE
  rlvr        the RLVR preset (GRPO on generated arithmetic); held-out accuracy of the
              initial model and of the trained one, with 95% intervals, and its curve
  lsp         the LSP preset (data-free: the model writes the sums itself), measured the
              same way on the same held-out sums; plotted beside RLVR when both ran
With several --seeds every run is repeated per seed (folders NAME-seedS): how reliable a
result is matters as much as its best value.
Prints one table and writes `learning_curves.png` / `rae_ablation.png` into --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from selfplay.config import load_config
from selfplay.evals.arena import play
from selfplay.evals.exploitability import exploitability
from selfplay.agents import make_agent
from selfplay.evals.stats import rate
from selfplay.games import make as make_game
from selfplay.report import compare_runs
from selfplay.trainer import Trainer

# name -> (preset, overrides, minutes)
PRESETS = {
    "tictactoe": ("spiral_tictactoe_tiny", [], 10),
    "kuhn": ("spiral_kuhn_tiny", [], 10),
    "ablation": ("spiral_tictactoe_tiny", ["recipe.advantage=none"], 10),
    "rlvr": ("rlvr_tiny", [], 5),
    "lsp": ("lsp_tiny", [], 15),
}
HELD_OUT = ("rlvr", "lsp")  # recipes measured by held-out accuracy on a task family


def train(name: str, minutes: float | None, out: Path, seed: int | None = None, overrides: list[str] = ()):
    preset, extra, default_minutes = PRESETS[name]
    folder = out / (name if seed is None else f"{name}-seed{seed}")
    seeded = [] if seed is None else [f"seed={seed}"]
    cfg = load_config(f"selfplay/configs/{preset}.yaml", [*extra, *overrides, *seeded, f"output_dir={folder}",
                                                          f"time_limit_minutes={minutes or default_minutes}"])
    trainer = Trainer(cfg, folder)
    before = trainer.recipe.evaluate(0).metrics if cfg.recipe.name in HELD_OUT else {}
    start = time.perf_counter()
    trainer.train()
    trainer.wall_minutes = (time.perf_counter() - start) / 60
    return trainer, before


def final_eval(trainer: Trainer, before: dict, games: int) -> dict:
    out = {"steps": trainer.step, "minutes": round(trainer.wall_minutes, 1)}
    if trainer.cfg.recipe.name in HELD_OUT:  # held-out accuracy before and after, with Wilson 95% intervals
        after = trainer.recipe.evaluate(trainer.step).metrics
        size = len(trainer.recipe.held_out)
        for key in sorted(k for k in after if k.endswith("/accuracy")):
            for when, metrics in (("initial", before), ("trained", after)):
                r = rate(round(metrics[key] * size), size)
                out[f"{key.removeprefix('eval/')}/{when}"] = [round(r["rate"], 3)] + [round(x, 3) for x in r["ci95"]]
        return out
    recipe = trainer.recipe
    agent = recipe.agent(seed=12345)  # the policy the run exports: the weight average when the preset averages
    spec = recipe.cfg.games[0]
    options = {"style": recipe.cfg.style, **spec.options}
    for opp in ["random"] + ([spec.eval_opponent] if spec.eval_opponent else []):
        rates = play(agent, make_agent(opp), spec.name, games, seed=777, progress=False, game_options=options).rates()
        out[f"vs_{opp}"] = {k: round(rates[k]["rate"], 3) for k in ("win", "draw", "loss", "invalid")}
        out[f"vs_{opp}"]["non_loss"] = round(rates["win"]["rate"] + rates["draw"]["rate"], 3)
    if "exploitability" in make_game(spec.name, **options).exact_measures:
        out["exploitability"] = round(float(exploitability(agent, spec.name, options)), 4)
        if trainer.policy.average:  # the last policy the learner trained, for comparison
            online = recipe.agent(online=True)
            out["exploitability_online"] = round(float(exploitability(online, spec.name, options)), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="every run's budget (default: per preset)")
    parser.add_argument("--only", default="tictactoe,kuhn,ablation,rlvr,lsp")
    parser.add_argument("--games", type=int, default=1000)
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: the presets' own)")
    parser.add_argument("--out", default="runs/bench-learning")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run, e.g. --set recipe.past_opponents.fraction=0.5")
    args = parser.parse_args()
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [None]
    results = {}
    for name in args.only.split(","):
        for seed in seeds:
            key = name if seed is None else f"{name}-seed{seed}"
            print(f"== {key}: training for {args.minutes or PRESETS[name][2]} minutes", flush=True)
            trainer, before = train(name, args.minutes, out, seed, args.set)
            results[key] = final_eval(trainer, before, args.games)
            print(json.dumps({key: results[key]}), flush=True)

    print(f"\nmachine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    for name, r in results.items():
        print(f"{name:<10} {json.dumps(r)}")
    if {"tictactoe", "ablation"} <= set(results):  # the ablation plot: default seeds only
        compare_runs([out / "tictactoe", out / "ablation"], ["RAE", "RAE off"],
                     "eval/tictactoe/vs_random/win", out / "rae_ablation.png")
        compare_runs([out / "tictactoe", out / "ablation"], ["RAE", "RAE off"], "response_length",
                     out / "rae_ablation_response_length.png")
    held_out = [name for name in ("rlvr", "lsp") if name in results]
    if held_out:
        labels = {"rlvr": "RLVR (GRPO, data)", "lsp": "LSP-Zero (data-free)"}
        compare_runs([out / n for n in held_out], [labels[n] for n in held_out], "eval/arithmetic/accuracy",
                     out / "held_out_accuracy.png")
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
