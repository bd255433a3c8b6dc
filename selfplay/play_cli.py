"""`selfplay play GAME`: you against a trained model (or any agent) in the terminal.

    selfplay play tictactoe --model runs/spiral-tictactoe     # a run's latest checkpoint
    selfplay play kuhn_poker --model Qwen/Qwen3-4B-Base --seat 1 -o rounds=1
    selfplay play tictactoe --opponent minimax                # no model needed

A run folder is played the way it was trained: its latest checkpoint and, from its
config.yaml, the observation style, the chat-template choice, the game's options (e.g.
kuhn_poker's rounds), the evaluation temperature and the response length. Any of them
can be overridden here. You move through the `human` agent (type "4", "[4]" or "bet";
a typo is asked again, never played).
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
from pathlib import Path
from typing import Callable, TextIO

import yaml

from selfplay.agents import make_agent
from selfplay.agents.base import Agent
from selfplay.games.base import Game
from selfplay.runs import ModelSource, resolve_model

SHOWN_TEXT_CHARS = 600  # a rambling model's response is cut when shown


def game_settings(game_name: str, source: ModelSource | None, style: str | None,
                  options: list[str]) -> tuple[str, dict]:
    """(style, game options): the command line first, then the run's config, then defaults.

    Default style: what the run trained with; `compact` for a tiny preset (tiny models
    learn the few-token observations); `chat` otherwise (real models, people)."""
    recipe = (source.config.get("recipe") if source else None) or {}
    game_options: dict = {}
    for spec in recipe.get("games") or []:
        if isinstance(spec, dict) and spec.get("name") == game_name:
            game_options.update(spec.get("options") or {})
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"game option {item!r} is not of the form key=value")
        game_options[key.strip()] = yaml.safe_load(value)
    if style is None:
        from selfplay.models import TINY_PRESETS

        tiny = source is not None and source.path in TINY_PRESETS and not Path(source.path).exists()
        style = recipe.get("style") or ("compact" if tiny else "chat")
    return style, game_options


def model_agent(source: ModelSource, temperature: float | None, max_new_tokens: int | None,
                seed: int | None, device: str) -> Agent:
    from selfplay.agents.llm import llm_agent_from

    return llm_agent_from(source, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, device=device)


def chat_view(game: Game, make_chat: Callable[[], Game], seed: int | None) -> Game:
    """The same position in `chat` wording, for the person: a tiny model plays `compact`
    ("X...O....:X"), which is no way to show a board to a human. Built by replaying the
    actions on a fresh chat-style game reset with the same seed (same deals)."""
    if game.style == "chat":
        return game
    view = make_chat()
    view.reset(seed=seed)
    for _, action in game.history:
        view.apply(action)
    return view


def play_game(game: Game, human: Agent, opponent: Agent, seat: int, opponent_name: str, out: TextIO,
              show_text: bool = False, view: Callable[[Game], Game] = lambda g: g) -> list[float]:
    """Play one game to the end, narrating the opponent's moves; return the returns.
    `view(game)` is what the person is shown (and answers in)."""
    def say(text: str = "") -> None:
        out.write(text + "\n")
        out.flush()

    while not game.is_terminal():
        if game.current_player == seat:
            shown = view(game)
            action = shown.parse(human.act(shown)).action  # the human agent only returns legal moves
            game.step(game.format_action(action))
            continue
        text = opponent.act(game)
        result = game.step(text)
        if show_text and text != (game.format_action(result.action) if result.action else None):
            shown = text if len(text) <= SHOWN_TEXT_CHARS else text[:SHOWN_TEXT_CHARS] + " ..."
            say(f"\n{opponent_name} wrote:\n  " + shown.replace("\n", "\n  "))
        if result.invalid is not None:
            say(f"\n{opponent_name} made an invalid move: {result.invalid.reason}")
        else:
            say(f"\n{opponent_name} plays {result.action}")

    returns = [float(r) for r in game.returns()]
    mine, theirs = returns[seat], returns[1 - seat]
    say("\n" + view(game).observation(seat))  # an invalid move is never applied: the board before it
    verdict = "you win" if mine > theirs else "you lose" if mine < theirs else "draw"
    if game.invalid is not None and game.invalid.player != seat:
        verdict += f" ({opponent_name} made an invalid move)"
    elif game.truncated:
        verdict += " (turn limit reached)"
    say(f"\nResult: {verdict}. Returns: you {mine:+g}, {opponent_name} {theirs:+g}")
    return returns


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("game", help="a game name for selfplay.games.make (tictactoe, kuhn_poker, ...)")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--model", metavar="RUN_DIR_OR_MODEL",
                     help="a run folder (its latest checkpoint), a checkpoint folder, a tiny preset or a HF id")
    who.add_argument("--opponent", metavar="AGENT_SPEC", help="play an agent instead: random, minimax, nash, ...")
    parser.add_argument("--seat", type=int, choices=(0, 1), default=0, help="your seat (0 moves first)")
    parser.add_argument("--style", choices=("compact", "chat"), default=None,
                        help="observation style (default: the run's; compact for tiny presets; else chat)")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a game option, e.g. -o rounds=1 (repeatable; overrides the run's)")
    parser.add_argument("--temperature", type=float, default=None, help="model sampling (default: the run's eval)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="model response limit (default: the run's)")
    parser.add_argument("--show-text", action="store_true",
                        help="show the model's whole response (in poker its reasoning may reveal its card)")
    parser.add_argument("--seed", type=int, default=None, help="fixes deals and the opponent's sampling")
    parser.add_argument("--device", default="auto", help="where the model runs (auto, cpu, cuda)")


def play_session(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """The whole command with explicit streams (tests drive it with a script of moves)."""
    from selfplay.games import make

    try:
        source = resolve_model(args.model) if args.model else None
        style, options = game_settings(args.game, source, args.style, args.option)
        game = make(args.game, style=style, **options)
        human = make_agent("human", input_stream=stdin, output_stream=stdout)
        if source is not None:
            opponent_name = "model"
            stdout.write(f"Loading {source.path} ...\n")
            opponent = model_agent(source, args.temperature, args.max_new_tokens, args.seed, args.device)
        else:
            opponent_name = args.opponent
            opponent = make_agent(args.opponent, seed=args.seed)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"selfplay play: {error}", file=sys.stderr)
        return 2

    # A seed is always drawn: the person's chat view replays the game with the same deals.
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    game.reset(seed=seed)
    view = functools.partial(chat_view, make_chat=lambda: make(args.game, style="chat", **options), seed=seed)
    stdout.write(f"{args.game} ({style} style): you are player {args.seat}, against {opponent_name}."
                 " Type an action; Ctrl-D quits.\n")
    try:
        play_game(game, human, opponent, args.seat, opponent_name, stdout, show_text=args.show_text, view=view)
    except EOFError:
        stdout.write("\nNo more input: game abandoned.\n")
        return 1
    except KeyboardInterrupt:
        stdout.write("\nInterrupted: game abandoned.\n")
        return 130
    return 0


def run(args: argparse.Namespace) -> int:
    return play_session(args, sys.stdin, sys.stdout)
