"""`selfplay eval`: play an agent against an opponent, or run a model on a reasoning suite,
and report how it did.

    selfplay eval --game tictactoe --agent minimax --opponent random --games 1000
    selfplay eval --game kuhn_poker --agent nash --opponent random --games 500 --exploitability --json
    selfplay eval --game kuhn_poker --game-option rounds=1 --agent random --games 0 --exploitability
    selfplay eval --suite humaneval --agent llm:runs/x --limit 50
    selfplay eval --suite math --agent llm:tiny --json

Game rates are for --agent (win / draw / loss / invalid, overall and per seat), suite scores
(pass@1, accuracy) for its model, all with Wilson 95% intervals; --json prints one JSON
object instead of the table.
"""

from __future__ import annotations

import argparse
import json
import sys

# Suites sample greedily and allow longer answers than a game move, whatever a run's config says.
SUITE_AGENT_OPTIONS = {"temperature": 0.0, "max_new_tokens": 512, "device": "auto", "use_chat_template": None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from selfplay.agents import AGENTS
    from selfplay.evals.suites import SUITES

    agents = ", ".join(f"{n}:<{e.argument}>" if e.argument else n for n, e in sorted(AGENTS.items()))
    # Exactly one of --game / --suite, checked in run() so the error is one line, not a usage dump.
    parser.add_argument("--game", help="tictactoe, kuhn_poker, simple_negotiation, "
                        "openspiel:NAME, textarena:ENV (anything selfplay.games.make accepts)")
    parser.add_argument("--suite", help=f"a reasoning suite instead of a game: {', '.join(SUITES)} "
                        "(needs --agent llm:MODEL; see selfplay.evals.suites)")
    parser.add_argument("--limit", type=int, default=None,
                        help="suite: only this many problems, the same fixed subset every time")
    parser.add_argument("--batch-size", type=int, default=16, help="suite: prompts per generation batch")
    parser.add_argument("--game-option", action="append", default=[], metavar="KEY=VALUE",
                        help="game option, repeatable (e.g. rounds=1, style=compact)")
    parser.add_argument("--agent", required=True, help=f"the agent evaluated: {agents}")
    parser.add_argument("--agent-option", action="append", default=[], metavar="KEY=VALUE",
                        help="agent option, repeatable (e.g. temperature=0.6); suites take "
                        f"{', '.join(SUITE_AGENT_OPTIONS)}")
    parser.add_argument("--opponent", default="random", help="its opponent (default: random)")
    parser.add_argument("--opponent-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--games", type=int, default=100, help="number of games (seats alternate)")
    parser.add_argument("--seed", type=int, default=0, help="fixes deals and agents' choices (suites: sampling)")
    parser.add_argument("--lanes", type=int, default=64,
                        help="games played in parallel (a model agent gets them as one batch)")
    parser.add_argument("--exploitability", action="store_true",
                        help="also compute the agent's exact exploitability (Kuhn / Leduc poker)")
    parser.add_argument("--optimal-moves", choices=("auto", "on", "off"), default="auto",
                        help="share of the agent's moves that are minimax-optimal (auto: TicTacToe)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_options(pairs: list[str], what: str) -> dict:
    """["rounds=1", "style=compact"] -> {"rounds": 1, "style": "compact"}; values are read
    as JSON when they parse (numbers, true/false, null, lists), else kept as text."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} must look like KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


OPTIMAL_MOVE_GAMES = ("tictactoe", "openspiel:tic_tac_toe")


def evaluate(args: argparse.Namespace) -> dict:
    """Run what the flags ask for and return the JSON-ready summary."""
    from selfplay.agents import make_agent
    from selfplay.evals.arena import play
    from selfplay.games import make

    game_options = parse_options(args.game_option, "--game-option")
    make(args.game, **game_options)  # fail early, with the game's own error, on bad names
    agent = make_agent(args.agent, **parse_options(args.agent_option, "--agent-option"))
    if getattr(agent, "style", None) and "style" not in game_options:
        game_options["style"] = agent.style  # a trained model plays in the style it learned
    if args.opponent == args.agent and not args.opponent_option and not args.agent_option:
        opponent = agent  # self-play: one object, so its turns in both seats batch together
    else:
        opponent = make_agent(args.opponent, **parse_options(args.opponent_option, "--opponent-option"))
    if args.exploitability:  # check it can be measured before playing any games
        from selfplay.agents.spiel_bridge import spiel_game_string
        from selfplay.evals.exploitability import classic_template

        spiel_game_string(classic_template(args.game, game_options)[0])
        if not agent.has_action_probabilities:
            raise ValueError(f"agent {args.agent!r} does not expose action probabilities; "
                             "exploitability needs them")
    optimal = args.optimal_moves == "on" or (args.optimal_moves == "auto" and args.game in OPTIMAL_MOVE_GAMES)
    result = play(
        agent, opponent, args.game, args.games, seed=args.seed, lanes=args.lanes,
        progress=False if (args.no_progress or args.json) else None,
        optimal_moves=optimal, game_options=game_options, names=(args.agent, args.opponent),
    )
    summary = result.summary()
    if args.exploitability:
        from selfplay.evals.exploitability import exploitability

        summary["exploitability"] = exploitability(agent, args.game, game_options).to_dict()
    return summary


def _rate(r: dict) -> str:
    if r["rate"] is None:
        return "-"
    low, high = r["ci95"]
    return f"{r['rate']:.3f} [{low:.3f}, {high:.3f}]"


def _mean(m: dict) -> str:
    if m["mean"] is None:
        return "-"
    low, high = m["ci95"]
    return f"{m['mean']:.2f} [{low:.2f}, {high:.2f}]"


def format_table(s: dict) -> str:
    lines = [f"{s['game']}: {s['agent']} vs {s['opponent']}, {s['games']} games, seed {s['seed']}, "
             f"{s['seconds']:.1f} s  (rates for {s['agent']}, 95% CI)"]
    if s["games"]:
        cols = ("win", "draw", "loss", "invalid")
        lines.append(f"{'':9}{'games':>6}  " + "".join(f"{c:<23}" for c in cols) + "mean return")
        rows = [("overall", s["overall"])] + [(f"seat {k}", v) for k, v in s["by_seat"].items()]
        for label, r in rows:
            lines.append(f"{label:9}{r['games']:>6}  " + "".join(f"{_rate(r[c]):<23}" for c in cols)
                         + _mean(r["mean_return"]))
        o = s["overall"]
        lines.append(f"mean game length: {_mean(o['mean_length'])} turns")
        if o["opponent_invalid"]["count"]:
            lines.append(f"opponent invalid moves: {_rate(o['opponent_invalid'])}")
        if "optimal_move_rate" in o:
            lines.append(f"optimal-move rate: {_rate(o['optimal_move_rate'])} "
                         f"({o['optimal_move_rate']['n']} moves; seat 0 "
                         f"{_rate(s['by_seat']['0']['optimal_move_rate'])}, seat 1 "
                         f"{_rate(s['by_seat']['1']['optimal_move_rate'])})")
        for e in s["invalid_examples"][:3]:
            lines.append(f"invalid ({e['by']}, game {e['game']}): {e['reason']}")
    if "exploitability" in s:
        x = s["exploitability"]
        lines.append(f"exploitability of {s['agent']} in {x['game']}: {x['exploitability']:.4g} "
                     f"(NashConv {x['nash_conv']:.4g}, {x['information_states']} information states)")
        if x.get("note"):
            lines.append(f"  note: {x['note']}")
    return "\n".join(lines)


def evaluate_suite(args: argparse.Namespace) -> dict:
    """Run a reasoning suite on the model named by `--agent llm:...`; the JSON-ready summary."""
    from selfplay.evals.suites import get_suite, run_suite

    get_suite(args.suite).ready()  # unknown names and missing packages fail before a model loads
    kind, _, model = args.agent.partition(":")
    if kind != "llm" or not model:
        raise ValueError(f"--suite needs a model agent, --agent llm:RUN_DIR_OR_MODEL, not {args.agent!r}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    options = parse_options(args.agent_option, "--agent-option")
    unknown = sorted(set(options) - set(SUITE_AGENT_OPTIONS))
    if unknown:
        raise ValueError(f"--agent-option {unknown[0]!r} is not used by suites; they take "
                         f"{', '.join(SUITE_AGENT_OPTIONS)}")
    options = {**SUITE_AGENT_OPTIONS, **options}
    from selfplay.agents.llm import load_llm_agent

    agent = load_llm_agent(model, **options)
    result = run_suite(args.suite, agent.generator, agent.tokenizer, limit=args.limit, seed=args.seed,
                       temperature=agent.sampling.temperature, max_new_tokens=agent.sampling.max_new_tokens,
                       use_chat_template=agent.prompter.use_chat_template, batch_size=args.batch_size,
                       progress=False if (args.no_progress or args.json) else None)
    return {**result.to_dict(), "agent": args.agent, "limit": args.limit, "seed": args.seed,
            "temperature": agent.sampling.temperature, "max_new_tokens": agent.sampling.max_new_tokens}


def format_suite(s: dict) -> str:
    low, high = s["ci95"]
    lines = [f"{s['suite']}: {s['agent']}, {s['n']} problems, seed {s['seed']}, temperature "
             f"{s['temperature']:g}, at most {s['max_new_tokens']} new tokens, {s['seconds']:.1f} s",
             f"{s['metric']}: {s['score']:.3f} [{low:.3f}, {high:.3f}]  ({s['passed']} of {s['n']}, 95% CI)"]
    for r in [r for r in s["records"] if not r["passed"]][:3]:
        lines.append(f"failed {r['id']}: {' '.join(r['reason'].split())}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from selfplay.sandbox import SandboxUnavailable

    try:
        if (args.game is None) == (args.suite is None):
            raise ValueError("give exactly one of --game GAME or --suite SUITE")
        summary = evaluate(args) if args.game is not None else evaluate_suite(args)
    except (ValueError, ImportError, OSError, SandboxUnavailable) as e:
        # bad names, options, missing extras or model folders, no sandbox here: say so in one line
        print(f"selfplay eval: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_table(summary) if args.game is not None else format_suite(summary))
    return 0
