"""benchmarks/lsp_lead.py: the Challenger's lead, binned by the Solver's held-out accuracy, on numbers
worked out by hand and on the keys a real LSP run logs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "lsp_lead.py"
spec = importlib.util.spec_from_file_location("lsp_lead", SCRIPT)
lsp_lead = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lsp_lead)


def evaluation(step: int, fresh: float, held_out: float, uniform: float, sampled=None) -> dict:
    row = {"step": step, "eval/lsp/fresh_accuracy": fresh, "eval/arithmetic/accuracy": held_out,
           "eval/lsp/uniform_accuracy": uniform}
    if sampled:
        row |= dict(zip(lsp_lead.SAMPLED, sampled))
    return row


def write_run(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_lead_bins_pooled_evaluations(tmp_path):
    one = write_run(tmp_path / "a", [
        {"step": 1, "lsp/valid_queries": 0.5},  # a training row: not an evaluation
        evaluation(100, 0.2, 0.4, 0.5, sampled=(0.1, 0.3, 0.4)),
        evaluation(200, 0.9, 0.95, 0.9, sampled=(0.8, 0.9, 0.9)),
    ])
    two = write_run(tmp_path / "b", [
        evaluation(100, 0.6, 0.4, 0.5),  # no sampled reading: the bin's sampled columns are left out
        evaluation(200, 1.0, 1.0, 1.0),  # 1.0 falls in the last bin
    ])
    rows = lsp_lead.evaluations(one) + lsp_lead.evaluations(two)
    assert len(rows) == 4
    low, high = lsp_lead.lead(rows, [0.0, 0.5, 0.9, 1.0])
    # held-out in [0, 0.5): fresh - held-out -0.2 and +0.2; one of two below; fresh - uniform -0.3, +0.1
    assert low == {"held_out": [0.0, 0.5], "evaluations": 2, "fresh_minus_held_out": 0.0,
                   "fresh_below_held_out": 0.5, "fresh_minus_uniform": -0.1, "uniform_minus_held_out": 0.1}
    # [0.9, 1.0]: -0.05 and 0.0; one below; fresh - uniform 0, 0; uniform - held-out -0.05, 0; sampled -0.1 only
    assert high == {"held_out": [0.9, 1.0], "evaluations": 2, "fresh_minus_held_out": -0.025,
                    "fresh_below_held_out": 0.5, "fresh_minus_uniform": 0.0, "uniform_minus_held_out": -0.025}
    (only,) = lsp_lead.lead(rows[:2], [0.0, 0.5])  # held-out 0.95 is outside every bin
    assert only["sampled_fresh_minus_held_out"] == -0.2 and only["sampled_fresh_below_held_out"] == 1.0


def test_lead_reads_a_real_run(tmp_path):
    from selfplay.config import load_config
    from selfplay.trainer import Trainer

    out = tmp_path / "run"
    overrides = ["steps=2", "save_every=2", "eval.every=1", "threads=1", "time_limit_minutes=null",
                 "recipe.answers_per_query=2", "recipe.eval_size=16", "recipe.queries_per_step=16",
                 "recipe.challenger_probes=2",
                 # digits only: every fresh query fills the template, so every evaluation has one
                 'recipe.compact_alphabet="0123456789"']
    Trainer(load_config("selfplay/configs/lsp_tiny.yaml", overrides), out).train()
    rows = lsp_lead.evaluations(out)
    assert rows, "no evaluation with a fresh-query accuracy"
    (row,) = lsp_lead.lead(rows, [0.0, 1.0])
    assert row["evaluations"] == len(rows) and "sampled_fresh_minus_held_out" in row
    shown = subprocess.run([sys.executable, str(SCRIPT), str(out), "--bins", "0,1"], capture_output=True, text=True)
    assert shown.returncode == 0 and json.loads(shown.stdout) == row


@pytest.mark.parametrize("args, says", [(["--bins", "0,x"], "comma-separated numbers"),
                                         (["--bins", "0.5,0.1"], "increasing order"),
                                         ([], "no metrics.jsonl")])
def test_bad_input_is_one_line(tmp_path, args, says):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), *args], capture_output=True, text=True)
    assert done.returncode == 2 and says in done.stderr.strip().splitlines()[-1]
