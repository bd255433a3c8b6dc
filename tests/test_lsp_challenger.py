"""benchmarks/lsp_challenger.py reads a real LSP run's checkpoint and accounts for every query."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfplay.tasks import make as make_task

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "lsp_challenger.py"
spec = importlib.util.spec_from_file_location("lsp_challenger", SCRIPT)
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lsp") / "run"
    done = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "lsp_tiny", f"output_dir={out}", "steps=2",
                           "save_every=2", "eval.every=0", "threads=1", "time_limit_minutes=null",
                           "recipe.queries_per_step=32", "recipe.answers_per_query=2",
                           # two operands: the random Challenger writes a valid sum once in 30-100 tries
                           "recipe.task_options.terms=2", 'recipe.compact_template="{}+{}"',
                           "recipe.query_max_new_tokens=2"],
                          env={**os.environ, "SELFPLAY_NO_PROGRESS": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


def test_every_sampled_query_is_counted_once(run_dir):
    figures = probe.challenger_support(run_dir, batches=12, uniform=40)
    assert figures["checkpoint"] == "step-000002"
    assert figures["queries"] == 12 * 32  # batches x queries_per_step
    asked = figures["asked"]
    assert sum(asked.values()) == figures["queries"] and len(asked) == figures["distinct"]
    assert dict(figures["most_asked"]).items() <= asked.items()
    # the shares, recomputed from the task family itself: a training sum, a held-out one, or no sum
    task = make_task("arithmetic", style="compact", digits=1, terms=2, operators="+")
    # a text shorter than the template's three characters was written short and is refused, as in
    # collect, though the family reads "7" as a problem
    short = [text for text in asked if len(text) < 3]
    assert any(task.check_query(text).problem for text in short)  # the case is exercised
    problems = {text: None if text in short else task.check_query(text).problem for text in asked}
    training = [t for t, p in problems.items() if p is not None and not task.is_held_out(p)]
    held_out = [t for t, p in problems.items() if p is not None and task.is_held_out(p)]
    assert figures["distinct_training_sums"] == len(training) > 0
    assert figures["valid"] == pytest.approx(sum(asked[t] for t in training) / figures["queries"])
    assert figures["held_out"] == pytest.approx(sum(asked[t] for t in held_out) / figures["queries"])
    inside, outside = figures["uniform_inside"][0], figures["uniform_outside"][0]
    assert inside + outside == 40 and inside <= figures["distinct_training_sums"]
    assert 0 <= figures["uniform"] <= 1
    # two operands: every sum is three characters long, asked or held out
    assert list(figures["by_length"]) == [3]
    three = figures["by_length"][3]
    assert three["asked"] == 1.0 and three["accuracy_as_asked"] == figures["accuracy_as_asked"]
    assert three["held_out"] == (len(task.held_out(256)), figures["held_out_accuracy"])  # the preset's eval_size


def test_a_folder_without_checkpoints_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoints/step-"):
        probe.challenger_support(tmp_path)
