"""`selfplay play`: a scripted person plays to the end against agents and a run's model."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys

import pytest

from selfplay.play_cli import ModelSource, add_arguments, game_settings, play_session, resolve_model

# Every cell in order: whatever the opponent took, the next line is a legal move.
ALL_CELLS = "".join(f"{i}\n" for i in range(9))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def play(argv: list[str], moves: str) -> tuple[int, str]:
    out = io.StringIO()
    code = play_session(parse(argv), io.StringIO(moves), out)
    return code, out.getvalue()


def test_minimax_never_loses_to_a_scripted_person():
    code, out = play(["tictactoe", "--opponent", "minimax", "--seed", "1"], ALL_CELLS)
    assert code == 0
    result = out.strip().splitlines()[-1]
    assert result in ("Result: you lose. Returns: you -1, minimax +1", "Result: draw. Returns: you +0, minimax +0")
    assert "minimax plays [4]" in out  # the opponent's moves are narrated


def test_a_typo_is_asked_again_not_played():
    # Seat 1 against random, a typo on the way: the typo is asked again, not played.
    code, out = play(["tictactoe", "--opponent", "random", "--seat", "1", "--seed", "2"], "nine\n" + ALL_CELLS)
    assert code == 0 and "'nine' is not a legal action" in out
    assert out.strip().splitlines()[-1].startswith("Result: ")


def test_kuhn_options_from_command_line():
    # One round of Kuhn poker against the Nash policy: bet-or-call always ends it in <= 2 of our moves.
    code, out = play(["kuhn_poker", "--opponent", "nash", "-o", "rounds=1", "--seed", "0"], "bet\ncall\ncall\n")
    assert code == 0 and "1 round game of Kuhn Poker" in out and "Result: " in out


def test_running_out_of_input_abandons_the_game():
    code, out = play(["tictactoe", "--opponent", "random", "--seed", "0"], "4\n")
    assert code == 1 and out.rstrip().endswith("No more input: game abandoned.")


def test_settings_come_from_the_run_then_the_command_line():
    source = ModelSource("x", {"recipe": {"name": "spiral", "style": "compact",
                                          "games": [{"name": "kuhn_poker", "options": {"rounds": 1}}]}})
    assert game_settings("kuhn_poker", source, None, []) == ("compact", {"rounds": 1})
    assert game_settings("kuhn_poker", source, "chat", ["rounds=3"]) == ("chat", {"rounds": 3})
    assert game_settings("tictactoe", ModelSource("tiny"), None, []) == ("compact", {})
    assert game_settings("tictactoe", None, None, []) == ("chat", {})
    with pytest.raises(ValueError, match="key=value"):
        game_settings("tictactoe", None, None, ["rounds"])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as the trainer leaves it: config.yaml and two tiny checkpoints."""
    from selfplay.models import build_tiny_model, save_checkpoint

    run = tmp_path_factory.mktemp("run")
    (run / "config.yaml").write_text(
        "model:\n  name: tiny\n  use_chat_template: false\nsampling:\n  max_new_tokens: 8\n"
        "eval:\n  temperature: 1.0\nrecipe:\n  name: spiral\n  style: compact\n  games:\n  - name: tictactoe\n")
    model, tokenizer = build_tiny_model("tiny", seed=0, num_hidden_layers=1)
    for step in (1, 2):
        save_checkpoint(model, tokenizer, run / "checkpoints" / f"step-{step:06d}")
    (run / "checkpoints" / "step-000003.tmp").mkdir()  # a half-written checkpoint is never picked
    return run


def test_resolve_model_picks_the_latest_checkpoint(run_dir, tmp_path):
    source = resolve_model(str(run_dir))
    assert source.path.endswith("step-000002") and source.config["recipe"]["style"] == "compact"
    assert resolve_model(source.path).config == source.config  # a checkpoint of a run: the run's config
    assert resolve_model("tiny") == ModelSource("tiny", {})
    (tmp_path / "config.yaml").write_text("recipe: {name: spiral, style: chat}\n")
    with pytest.raises(FileNotFoundError, match="no checkpoint yet"):
        resolve_model(str(tmp_path))


def test_cli_plays_a_run_folder_to_the_end(run_dir):
    # The real command in a fresh process, a person typing through stdin.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "selfplay.cli", "play", "tictactoe", "--model", str(run_dir), "--seed", "0"],
        input=ALL_CELLS, capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "step-000002" in proc.stdout and "(compact style)" in proc.stdout
    assert "Current Board:" in proc.stdout  # the person sees the chat wording of the compact game
    result = proc.stdout.strip().splitlines()[-1]
    assert result.startswith("Result: ") and "you" in result and "model" in result
