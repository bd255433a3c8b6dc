"""Does self-play learn on a CPU? The issue's learning targets, measured.

    python benchmarks/learning.py [--minutes M] [--only tictactoe,kuhn,ablation,rlvr,lsp,smollm2,azr,...] [--seeds 0,1,2]
                                  [--out runs/bench] [--set KEY=VALUE ...]   (config overrides for every run)

Runs, each with a wall-clock budget (`time_limit_minutes`; 10 minutes, RLVR 5, unless --minutes):
  tictactoe   the default `selfplay train` preset; then 1,000 greedy games against
              `random` and against `minimax` (targets: >= 85% wins vs random, <= 2%
              invalid moves, >= 50% non-losses vs minimax)
  kuhn        the Kuhn Poker tiny preset; exact exploitability of the final policy
              (target: <= 0.10; uniform random play is 0.458)
  ablation    the TicTacToe preset with RAE off (raw returns), for the plot beside RAE
  rlvr        the RLVR preset (GRPO on generated one-digit sums); held-out accuracy of the
              initial model and of the trained one, with 95% intervals, and its curve
  lsp         the LSP preset (15 minutes; data-free: the model writes three-operand sums
              itself), measured the same way
  rlvr_sums3  the data-driven baseline on lsp's sums and held-out set, for the same 15 minutes;
              plotted beside LSP when both ran
  smollm2     SPIRAL TicTacToe on the real SmolLM2-135M-Instruct (60 minutes; needs
              `selfplay[smollm2]`): --games against `random` before and after (targets:
              invalid moves <= 20%, more wins than random play's 43.6%), and HumanEval /
              math on fixed subsets before and after (the transfer question)
  azr         the AZR tiny preset (15 minutes): held-out deduction, abduction and induction
              solve rates of the initial and the trained model with 95% intervals; valid
              proposals, learnable shares, the sandbox's share of a step and its programs/s
              over the last 50 steps (targets: >= 90% valid, >= 30% learnable, +15 points)
  azr_smollm2 the AZR chat preset on SmolLM2 (30 minutes), measured the same way
  lsp_smollm2, lsp_zero_smollm2, rlvr_smollm2
              the paper's comparison on SmolLM2 (30 minutes each): LSP, LSP-Zero and RLVR on
              the same chat sums, held-out accuracy before and after with 95% intervals, the
              win rate against the initial model, and R, R_Q, KL per role plotted side by side
With several --seeds every run is repeated per seed (folders NAME-seedS): how reliable a
result is matters as much as its best value.
Prints one table and writes `results.json` (beside the results of earlier invocations into the same
--out) and the plots into --out: `rae_ablation.png`, `held_out_accuracy*.png`
(LSP beside RLVR), `NAME_harder.png` per LSP run (and `NAME_harder_sampled.png` with `recipe.eval_sampled`), the AZR and SmolLM2 curves.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from selfplay.config import ConfigError, load_config
from selfplay.evals.arena import play
from selfplay.evals.exploitability import exploitability
from selfplay.agents import make_agent
from selfplay.evals.stats import rate
from selfplay.games import make as make_game
from selfplay.report import compare_lines, compare_runs
from selfplay.trainer import Trainer

# name -> (preset, overrides, minutes)
PRESETS = {
    "tictactoe": ("spiral_tictactoe_tiny", [], 10),
    "kuhn": ("spiral_kuhn_tiny", [], 10),
    "ablation": ("spiral_tictactoe_tiny", ["recipe.advantage=none"], 10),
    "rlvr": ("rlvr_tiny", [], 5),
    "lsp": ("lsp_tiny", [], 15),
    "rlvr_sums3": ("rlvr_sums3_tiny", [], 15),
    "smollm2": ("spiral_tictactoe_smollm2", [], 60),
    "azr": ("azr_tiny", [], 15),
    "azr_smollm2": ("azr_smollm2", [], 30),
    "lsp_smollm2": ("lsp_smollm2", [], 30),
    "lsp_zero_smollm2": ("lsp_zero_smollm2", [], 30),
    "rlvr_smollm2": ("rlvr_smollm2", [], 30),
}
# runs also scored on reasoning suites before and after: suite -> fixed subset size
REASONING = {"smollm2": {"humaneval": 32, "math": 64}}
REASONING_MAX_NEW_TOKENS = 384
HELD_OUT = ("rlvr", "lsp", "azr")  # recipes measured on held-out problems before and after


def run_key(name: str, seed: int | None) -> str:
    """A run's key in the results and its folder under --out: NAME, or NAME-seedS with --seeds."""
    return name if seed is None else f"{name}-seed{seed}"


def run_name(key: str) -> str:
    """The benchmark name a run's key belongs to (`lsp-seed2` -> `lsp`)."""
    return key.partition("-seed")[0]


def run_config(name: str, minutes: float | None, out: Path, seed: int | None, overrides: list[str]):
    """The config of one run: its preset, the benchmark's settings for it and the --set overrides."""
    preset, extra, default_minutes = PRESETS[name]
    seeded = [] if seed is None else [f"seed={seed}"]
    return load_config(f"selfplay/configs/{preset}.yaml", [*extra, *overrides, *seeded,
                                                           f"output_dir={out / run_key(name, seed)}",
                                                           f"time_limit_minutes={minutes or default_minutes}"])


def train(name: str, minutes: float | None, out: Path, seed: int | None = None, overrides: list[str] = (),
          games: int = 1000, skip_initial: bool = False):
    folder = out / run_key(name, seed)
    cfg = run_config(name, minutes, out, seed, overrides)
    trainer = Trainer(cfg, folder)
    before = trainer.recipe.evaluate(0).metrics if cfg.recipe.name in HELD_OUT else {}
    if name in REASONING and not skip_initial:  # the initial model: its games and its suites
        before = {**game_rates(trainer, games), **reasoning_scores(trainer, REASONING[name])}
        print(json.dumps({f"{name}/initial": before}), flush=True)
    start = time.perf_counter()
    trainer.train()
    trainer.wall_minutes = (time.perf_counter() - start) / 60
    return trainer, before


def game_rates(trainer: Trainer, games: int) -> dict:
    """The policy's rates against `random` (and the game's eval opponent), with 95% intervals."""
    recipe = trainer.recipe
    agent = recipe.agent(seed=12345)
    spec = recipe.cfg.games[0]
    options = {"style": recipe.cfg.style, **spec.options}
    out = {}
    for opp in ["random"] + ([spec.eval_opponent] if spec.eval_opponent else []):
        rates = play(agent, make_agent(opp), spec.name, games, seed=777, progress=False, game_options=options).rates()
        out[f"vs_{opp}"] = {k: [round(rates[k]["rate"], 3)] + [round(x, 3) for x in rates[k]["ci95"]]
                            for k in ("win", "draw", "loss", "invalid")}
    return out


def reasoning_scores(trainer: Trainer, sizes: dict[str, int]) -> dict:
    """Greedy scores on fixed subsets of the reasoning suites, with 95% intervals."""
    from selfplay.evals.suites import run_suite

    policy = trainer.policy
    out = {}
    for suite, size in sizes.items():
        result = run_suite(suite, policy.eval_generator, policy.tokenizer, limit=size,
                           max_new_tokens=REASONING_MAX_NEW_TOKENS, use_chat_template=policy.use_chat_template)
        out[suite] = [round(result.score, 3)] + [round(x, 3) for x in result.ci95]
    return out


def final_eval(trainer: Trainer, before: dict, games: int, name: str = "") -> dict:
    out = {"steps": trainer.step, "minutes": round(trainer.wall_minutes, 1)}
    if trainer.cfg.recipe.name in HELD_OUT:  # held-out accuracy before and after, with Wilson 95% intervals
        after = trainer.recipe.evaluate(trainer.step).metrics
        held_out = trainer.recipe.held_out
        # (eval/lsp/fresh_accuracy is over the Challenger's fresh queries, not the held-out set: lsp_harder)
        for key in sorted(k for k in after if k.endswith(("/accuracy", "/solve_rate")) and "/lsp/" not in k):
            size = len(held_out[key.split("/")[2]]) if isinstance(held_out, dict) else len(held_out)
            for when, metrics in (("initial", before), ("trained", after)):
                r = rate(round(metrics[key] * size), size)
                out[f"{key.removeprefix('eval/')}/{when}"] = [round(r["rate"], 3)] + [round(x, 3) for x in r["ci95"]]
        if trainer.cfg.recipe.name == "azr":
            out["training"] = azr_training(trainer.run_dir)
            out["held_out_distinct_answers"] = {kind: round(after[f"eval/azr/{kind}/distinct_answers"], 3)
                                                for kind in held_out}
        if trainer.cfg.recipe.name == "lsp":
            out["harder"] = lsp_harder(trainer.run_dir)
            if "eval/lsp/win_rate" in after:  # against the initial model, on the shipped requests
                out["win_rate_vs_initial"] = round(after["eval/lsp/win_rate"], 3)
        return out
    if name in REASONING:
        out["initial"] = before
        out["trained"] = {**game_rates(trainer, games), **reasoning_scores(trainer, REASONING[name])}
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


def azr_training(run_dir: Path, last: int = 50) -> dict:
    """AZR's training figures over the last `last` steps: valid proposals, the share of valid
    proposals with a learnability reward in (0, 1), and the sandbox's share of a step's wall
    time and the programs per second it ran while in use."""
    from selfplay.metrics import read_metrics

    rows = read_metrics(run_dir)[-last:]
    def mean(key: str) -> float | None:  # over the steps that have the figure
        values = [r[key] for r in rows if key in r]
        return round(sum(values) / len(values), 3) if values else None

    out = {kind: {"valid_proposals": mean(f"azr/{kind}/valid_proposals"),
                  "learnability_positive_of_valid": mean(f"azr/{kind}/learnability_positive"),
                  "solve_rate": mean(f"azr/{kind}/solve_rate")}
           for kind in ("deduction", "abduction", "induction")}
    sandbox_s = sum(r["time/azr_sandbox_s"] for r in rows)
    step_s = sum(r["time/collect_s"] + r["time/update_s"] for r in rows)
    out["sandbox_share_of_step"] = round(sandbox_s / step_s, 3)
    out["sandbox_programs_per_s"] = round(sum(r["azr/sandbox_programs"] for r in rows) / max(sandbox_s, 1e-9), 1)
    return out


# do the Challenger's queries get harder? The Solver's accuracy on (fresh queries, held-out problems,
# training problems drawn uniformly), answered greedily and (with recipe.eval_sampled) sampled as in training
HARDER_KEYS = {"greedy": ("eval/lsp/fresh_accuracy", "eval/arithmetic/accuracy", "eval/lsp/uniform_accuracy"),
               "sampled": ("eval/lsp/fresh_sampled_accuracy", "eval/lsp/held_out_sampled_accuracy",
                           "eval/lsp/uniform_sampled_accuracy")}


def lsp_harder(run_dir: Path, last: int = 10) -> dict:
    """Do the Challenger's queries get harder? Over the last `last` evaluations: the Solver's
    greedy accuracy on the Challenger's fresh queries, on the held-out set and on training
    problems drawn uniformly; and the share of all evaluations where the fresh queries were
    the harder. The same again with the answers sampled as in training (`sampled`): the
    Solver's mean reward V(q), which the Challenger is paid by."""
    from selfplay.metrics import read_metrics

    rows = [r for r in read_metrics(run_dir) if HARDER_KEYS["greedy"][0] in r]
    sampled = [r for r in rows if HARDER_KEYS["sampled"][0] in r]

    def compare(rows: list[dict], fresh: str, held_out: str, uniform: str) -> dict:
        def mean(key: str) -> float:
            return round(sum(r[key] for r in rows[-last:]) / len(rows[-last:]), 3)

        def below(key: str) -> float:
            return round(sum(r[fresh] < r[key] for r in rows) / len(rows), 3)

        return {"fresh_accuracy": mean(fresh), "held_out_accuracy": mean(held_out),
                "uniform_training_accuracy": mean(uniform), "evaluations_fresh_below_held_out": below(held_out),
                "evaluations_fresh_below_uniform": below(uniform)}

    out = compare(rows, *HARDER_KEYS["greedy"]) if rows else {}
    if sampled:
        out["sampled"] = compare(sampled, *HARDER_KEYS["sampled"])
    return out


def azr_plots(results: dict, out: Path) -> None:
    """AZR's curves, a line per seed: valid and learnable proposals and the held-out solve rate
    per task type; on SmolLM2 also the format errors, of proposals and of held-out answers."""
    for name, label, prefix in (("azr", "AZR, tiny model, compact", ""), ("azr_smollm2", "AZR, SmolLM2-135M", "smollm2_")):
        runs = [key for key in results if run_name(key) == name]
        if not runs:
            continue
        labels = [label if key == name else key.removeprefix(f"{name}-") for key in runs]
        chat = name == "azr_smollm2"
        for kind in ("deduction", "abduction"):
            keys = [f"azr/{kind}/valid_proposals", f"azr/{kind}/learnability_positive", f"eval/azr/{kind}/solve_rate"]
            if chat:
                keys += [f"azr/{kind}/format_errors", f"eval/azr/{kind}/format_errors"]
            for key in keys:
                compare_runs([out / run for run in runs], labels, key, out / f"{prefix}{key.replace('/', '_')}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="every run's budget (default: per preset)")
    parser.add_argument("--only", default="tictactoe,kuhn,ablation,rlvr,lsp",
                        help="runs, comma-separated; smollm2 (an hour, the real model) is not in the default")
    parser.add_argument("--games", type=int, default=1000)
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: the presets' own)")
    parser.add_argument("--out", default="runs/bench-learning")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run, e.g. --set recipe.past_opponents.fraction=0.5")
    parser.add_argument("--skip-initial", action="store_true",
                        help="smollm2: skip measuring the initial model (the same figures every run)")
    args = parser.parse_args()
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [None]
    unknown = [name for name in args.only.split(",") if name not in PRESETS]
    if unknown:
        parser.error(f"--only: no run named {', '.join(unknown)} (runs: {', '.join(PRESETS)})")
    for name in args.only.split(","):  # every run's config, before the first trains: a bad --set costs nothing
        for seed in seeds:
            try:
                run_config(name, args.minutes, out, seed, args.set)
            except ConfigError as err:
                parser.error(f"{run_key(name, seed)}: {err}")
    results = {}
    for name in args.only.split(","):
        for seed in seeds:
            key = run_key(name, seed)
            print(f"== {key}: training for {args.minutes or PRESETS[name][2]} minutes", flush=True)
            trainer, before = train(name, args.minutes, out, seed, args.set, args.games, args.skip_initial)
            results[key] = final_eval(trainer, before, args.games, name)
            print(json.dumps({key: results[key]}), flush=True)

    print(f"\nmachine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    for name, r in results.items():
        print(f"{name:<10} {json.dumps(r)}")
    if {"tictactoe", "ablation"} <= set(results):  # the ablation plot: default seeds only
        compare_runs([out / "tictactoe", out / "ablation"], ["RAE", "RAE off"],
                     "eval/tictactoe/vs_random/win", out / "rae_ablation.png")
        compare_runs([out / "tictactoe", out / "ablation"], ["RAE", "RAE off"], "response_length",
                     out / "rae_ablation_response_length.png")
    if "smollm2" in results:
        for metric in ("invalid_move_rate", "eval/tictactoe/vs_random/win"):
            compare_runs([out / "smollm2"], ["SmolLM2-135M, SPIRAL TicTacToe"], metric,
                         out / f"smollm2_{metric.replace('/', '_')}.png")
    azr_plots(results, out)
    labels = {"rlvr": "RLVR (GRPO, data)", "rlvr_sums3": "RLVR (GRPO, data)", "lsp": "LSP-Zero (data-free)",
              "rlvr_smollm2": "RLVR (GRPO, data)",
              "lsp_smollm2": "LSP (quality self-reward)", "lsp_zero_smollm2": "LSP-Zero"}

    def label(key: str) -> str:  # a run's label, with its seed when --seeds named one
        name, _, seed = key.partition("-seed")
        return labels[name] + (f", seed {seed}" if seed else "")

    for names, suffix in ((("rlvr",), "_rlvr_tiny"), (("rlvr_sums3", "lsp"), ""),
                          (("rlvr_smollm2", "lsp_zero_smollm2", "lsp_smollm2"), "_smollm2")):
        held_out = [key for key in results if run_name(key) in names]
        if held_out:
            compare_runs([out / key for key in held_out], [label(key) for key in held_out], "eval/arithmetic/accuracy",
                         out / f"held_out_accuracy{suffix}.png")
    for key in (k for k in results if run_name(k) in ("lsp", "lsp_smollm2", "lsp_zero_smollm2")):
        # do the queries get harder? the Solver on fresh queries beside the held-out set, per reading the run has
        for reading, suffix, ylabel in (("greedy", "", "greedy"), ("sampled", "_sampled", "sampled as in training")):
            if reading == "greedy" or reading in results[key].get("harder", {}):
                fresh, held_out, uniform = HARDER_KEYS[reading]
                compare_lines([(out / key, held_out, "held-out sums"), (out / key, uniform, "training sums, uniform"),
                               (out / key, fresh, "the Challenger's fresh queries")],
                              label(key), out / f"{key}_harder{suffix}.png", ylabel=f"Solver accuracy, {ylabel}")
    smollm2 = [n for n in ("lsp_zero_smollm2", "lsp_smollm2") if n in results]
    for key in ("lsp/solver_reward", "lsp/quality_reward", "loss/kl/solver", "loss/kl/challenger", "lsp/valid_queries",
                "lsp/distinct_queries", "lsp/answer_length", "eval/lsp/win_rate"):
        if smollm2:  # R, R_Q, KL per role and the degeneration signals, LSP-Zero beside LSP
            compare_runs([out / n for n in smollm2], [labels[n] for n in smollm2], key,
                         out / f"smollm2_{key.replace('/', '_')}.png")
    save_results(out, results)


def save_results(out: Path, results: dict) -> None:
    """Write `results` into OUT/results.json beside what earlier invocations wrote there (a run of
    the same name is replaced), so seeds run one at a time into one folder keep every result. A
    file that is not a results object is moved aside, not overwritten."""
    path = out / "results.json"
    earlier = {}
    if path.exists():
        try:
            earlier = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            earlier = None
        if not isinstance(earlier, dict):
            path.rename(out / "results.json.unreadable")
            print(f"{path}: not a results object; moved to results.json.unreadable", flush=True)
            earlier = {}
    path.write_text(json.dumps(earlier | results, indent=2))


if __name__ == "__main__":
    main()
