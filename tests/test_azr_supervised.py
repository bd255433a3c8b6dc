"""benchmarks/azr_supervised.py measures what the AZR tiny preset measures: the same held-out
tasks (outputs as the sandbox computes them), the same prompts, and no held-out program in its
training data."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from selfplay.sandbox import Sandbox
from selfplay.tasks.programs import Checker, CompactStyle, ProgramTask, held_out_tasks

BENCHMARK = Path(__file__).parent.parent / "benchmarks" / "azr_supervised.py"
spec = importlib.util.spec_from_file_location("azr_supervised", BENCHMARK)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_held_out_tasks_and_prompts_are_the_presets():
    with Sandbox(workers=2, timeout_s=2.0) as box:
        style = CompactStyle()
        recipe_tasks = held_out_tasks(Checker(box, style, timeout_s=2.0), bench.EVAL_SIZE)
    ours = bench.held_out()
    for kind in ("deduction", "abduction"):
        assert len(ours[kind]) == len(recipe_tasks[kind]) == 64
        for (expr, a, y), task in zip(ours[kind], recipe_tasks[kind]):
            assert (expr, (str(a),), (str(y),)) == (task.program, task.inputs, task.outputs)
    task = ProgramTask("a*3+1", ("5",), ("16",))
    assert style.solve_prompt("deduction", task, 1) == "SD:a*3+1|5="
    assert style.solve_prompt("abduction", task, 1) == "SA:a*3+1=16|"


def test_no_held_out_program_is_trained_on():
    held = {expr for items in bench.held_out().values() for expr, _, _ in items}
    examples = bench.training_examples(held)
    assert ("SD:a*3+1|5=", "16") in examples and ("SA:a*3+1=16|", "5") in examples
    prompts = {p for p, _ in examples}
    assert not any(p.startswith((f"SD:{e}|", f"SA:{e}=")) for e in held for p in prompts)


@pytest.mark.slow
def test_the_benchmark_runs_and_reports_solve_rates():
    out = subprocess.run([sys.executable, str(BENCHMARK), "--minutes", "0.05", "--model", "tiny", "--batch", "16",
                          "--eval-every", "5"], capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert rows[0]["step"] == 0 and rows[-1]["final"] and rows[-1]["step"] >= 1
    for row in rows:
        for kind in ("deduction", "abduction"):
            rate, (low, high) = row[kind]["solve_rate"], row[kind]["ci95"]
            assert 0 <= low <= rate <= high <= 1 and 1 <= row[kind]["distinct_answers"] <= 64
