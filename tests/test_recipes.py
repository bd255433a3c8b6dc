"""The contract every registered recipe passes: killed with SIGKILL mid-training and resumed,
a run equals one never interrupted (metrics and weights). A recipe added to RECIPES without
a tiny configuration here fails the first test, so no recipe escapes the contract."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfplay.metrics import read_metrics
from selfplay.recipes import RECIPES, recipe_class
from selfplay.runs import latest_checkpoint

# recipe -> (preset, overrides): 8 steps, a checkpoint every 3, evaluations every 4
CONTRACT = {
    "spiral": ("spiral_tictactoe_tiny", ["recipe.samples_per_step=32", "recipe.parallel_games=16",
                                         "recipe.eval_games=8"]),
    "rlvr": ("rlvr_tiny", ["recipe.prompts_per_step=8", "recipe.answers_per_prompt=4", "recipe.eval_size=16"]),
    "azr": ("azr_tiny", ["recipe.propose={deduction: 8, abduction: 8, induction: 4}",
                         "recipe.solve={deduction: 8, abduction: 8, induction: 4}", "recipe.attempts=4",
                         "recipe.executor_answers={deduction: 8, abduction: 8}", "recipe.eval_size=8"]),
    # the novelty bonus on (its counts are state a resume must restore), the Challenger kept to the
    # digits (the learner's restricted log-probs) and paid by the greedy answer from step 4; the
    # preset's probes and candidates (fewer), whose seed streams a resume must continue
    "lsp": ("lsp_tiny", ["recipe.queries_per_step=32", "recipe.answers_per_query=4", "recipe.eval_size=16",
                         "recipe.challenger_candidates=16",
                         "recipe.novelty_bonus=0.5", "recipe.novelty_decay=0.9", 'recipe.compact_alphabet="0123456789"',
                         "recipe.challenger_reward_late=greedy", "recipe.challenger_reward_late_from=4"]),
}
COMMON = ["steps=8", "save_every=3", "eval.every=4", "threads=1", "time_limit_minutes=null"]


def test_every_registered_recipe_is_held_to_the_contract():
    assert set(CONTRACT) == set(RECIPES), "give every recipe in RECIPES a tiny contract configuration here"


def test_an_unknown_recipe_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown recipe 'lsq'; available: azr, lsp, rlvr, spiral"):
        recipe_class("lsq")


def assert_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path: Path, preset: str, overrides: list[str],
                                                            weights: tuple[str, ...] = ("",)) -> list[dict]:
    """Train `preset` 8 steps straight; train it again, SIGKILL it once its step-6 checkpoint
    exists, resume with `--resume`; assert the two runs' metrics (but timings) and the final
    weights of each `weights` subfolder of the checkpoint are identical. Returns the metrics."""
    env = {**os.environ, "SELFPLAY_NO_PROGRESS": "1"}
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"

    def train(run_dir: Path) -> list[str]:
        return [sys.executable, "-m", "selfplay.cli", "train", preset, f"output_dir={run_dir}", *COMMON, *overrides]

    done = subprocess.run(train(straight), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen(train(crashed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (crashed / "checkpoints" / "step-000006").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "--resume", str(crashed)],
                             env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr

    def comparable(rows):
        return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))} for r in rows]

    a, b = read_metrics(straight), read_metrics(crashed)
    assert [r["step"] for r in b] == list(range(1, 9))
    assert comparable(a) == comparable(b)
    assert any(k.startswith("eval/") for k in b[-1])  # the evaluations ran, and agree
    for sub in weights:  # every weights file: a full model's, or a LoRA adapter's
        files = sorted(p.name for p in (latest_checkpoint(straight) / sub).glob("*.safetensors"))
        assert files
        for name in files:
            wa = load_file(latest_checkpoint(straight) / sub / name)
            wb = load_file(latest_checkpoint(crashed) / sub / name)
            assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    return b


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(CONTRACT))
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, recipe):
    preset, overrides = CONTRACT[recipe]
    assert_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, preset, overrides)


def test_the_trainer_knows_nothing_of_games_agents_or_evals():
    source = Path(__file__).parent.parent / "selfplay" / "trainer.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert imported, "no imports found: the test reads the wrong file"
    banned = [m for m in imported if m.startswith(("selfplay.games", "selfplay.agents", "selfplay.evals",
                                                   "selfplay.recipes.", "selfplay.tasks"))]
    assert not banned, f"trainer.py imports {banned}"
    assert "selfplay.recipes" in imported  # it runs recipes through the interface only
