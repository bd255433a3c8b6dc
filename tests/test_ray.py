"""Rollout workers on real Ray (a local instance): one worker reproduces the in-process run,
two workers' samples carry the right returns and roles, a worker SIGKILLed mid-call loses
no sample and counts none twice, resume is exact (in sync and in asynchronous mode, for every
recipe), asynchronous mode samples each step with the weights its schedule says, and a dead
cluster address fails fast.

    pytest -m ray          (needs `pip install 'selfplay[ray]'`; skipped with a message without it)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

import pytest

pytest.importorskip("ray", reason="Ray is not installed: pip install 'selfplay[ray]'")

from selfplay.config import load_config  # noqa: E402
from selfplay.metrics import read_metrics  # noqa: E402
from selfplay.models import SamplingParams, load_model  # noqa: E402
from selfplay.rollout.ray_workers import RayGenerator  # noqa: E402
from selfplay.trainer import Trainer  # noqa: E402
from selfplay.trainer_cli import resolve_preset  # noqa: E402
from tests.test_recipes import CONTRACT, assert_resume_after_sigkill_equals_an_uninterrupted_run  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

ENV = {**os.environ, "SELFPLAY_NO_PROGRESS": "1"}
RLVR = ["steps=4", "eval.every=2", "threads=1", "recipe.prompts_per_step=16", "recipe.eval_size=16"]


@pytest.fixture(scope="module")
def workers():
    import ray

    model, tokenizer = load_model("tiny", seed=0)
    # half a CPU each: the in-process tests after these find room for their own workers
    generator = RayGenerator("tiny", seed=0, workers=2, threads=1, cpus_per_worker=0.5)
    generator.load_weights(model.state_dict())
    yield generator, tokenizer
    generator.close()
    ray.shutdown()


def comparable(rows):
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))} for r in rows]


def test_one_worker_gives_the_in_process_runs_metrics(tmp_path):
    runs = {}
    for name, extra in {"local": [], "worker": ["distributed.rollout_workers=1"]}.items():
        out = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "rlvr_tiny", *RLVR, *extra,
                              f"output_dir={tmp_path / name}"], env=ENV, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[name] = read_metrics(tmp_path / name)
    assert [r["step"] for r in runs["worker"]] == [1, 2, 3, 4]
    assert comparable(runs["worker"]) == comparable(runs["local"])
    assert runs["worker"][-1]["loss/sampler_logprob_gap"] < 1e-5  # the worker had the learner's weights


def test_two_workers_samples_carry_the_right_returns_and_roles(tmp_path):
    cfg = load_config(resolve_preset("spiral_tictactoe_tiny"),
                      ["steps=2", "threads=1", "eval.every=0", "recipe.samples_per_step=64", "recipe.parallel_games=16",
                       "recipe.scheduling=token", "distributed.rollout_workers=2"])
    trainer = Trainer(cfg, tmp_path)
    batch = trainer.recipe.collect(0)
    assert len(batch.samples) >= 64
    by_game = defaultdict(lambda: defaultdict(set))
    for s in batch.samples:
        assert s.role in ("0", "1") and s.task == "tictactoe"
        by_game[s.episode_id][s.role].add(s.reward)
    finished = [seats for seats in by_game.values() if len(seats) == 2]
    assert finished
    for seats in finished:  # one return per seat and game, and zero-sum
        assert len(seats["0"]) == len(seats["1"]) == 1
        assert next(iter(seats["0"])) + next(iter(seats["1"])) == 0
    trainer.train()  # the run goes on with the workers: updates, and the new weights reach them
    assert trainer.step == 2
    assert read_metrics(tmp_path)[-1]["loss/sampler_logprob_gap"] < 0.5


def test_a_worker_killed_mid_call_loses_no_sample_and_counts_none_twice(workers):
    generator, tokenizer = workers
    prompts = [tokenizer(f"game {i}:")["input_ids"] for i in range(48)]
    no_special = tuple(range(len(tokenizer.all_special_ids), len(tokenizer)))  # no stop: long calls
    params = SamplingParams(temperature=1.0, max_new_tokens=1000, allowed_token_ids=no_special)
    generator.generate(prompts[:2], SamplingParams(max_new_tokens=1), seed=0)  # both workers hold the weights
    start = time.perf_counter()
    expected = generator.generate(prompts, params, seed=9)
    duration = time.perf_counter() - start
    victim = generator.pids()[0]
    result = {}
    call = threading.Thread(target=lambda: result.setdefault("gens", generator.generate(prompts, params, seed=9)))
    call.start()
    time.sleep(duration / 4)
    assert call.is_alive()  # the call is under way on both workers
    os.kill(victim, signal.SIGKILL)
    call.join(300)
    assert not call.is_alive()
    assert generator.pids()[0] != victim  # Ray restarted the worker
    assert [g.response_ids for g in result["gens"]] == [g.response_ids for g in expected]


def test_token_scheduling_replays_a_killed_workers_answers_once(workers):
    generator, tokenizer = workers
    no_special = tuple(range(len(tokenizer.all_special_ids), len(tokenizer)))
    engine = generator.engine(SamplingParams(temperature=1.0, max_new_tokens=300, allowed_token_ids=no_special))
    requests = [(f"r{i}", tokenizer(f"turn {i}:")["input_ids"], 300) for i in range(8)]
    finished = list(engine.step(requests, seed=1))
    for _ in range(3):
        finished += engine.step([], seed=2)
    os.kill(generator.pids()[1], signal.SIGKILL)
    step = 3
    while engine.running:
        step += 1
        finished += engine.step([], seed=step)
    keys = [key for key, _ in finished]
    assert sorted(keys) == sorted(key for key, _, _ in requests)  # every answer once: none lost, none twice


def test_rlvr_on_a_rollout_worker_resumes_exactly_after_sigkill(tmp_path):
    assert_resume_after_sigkill_equals_an_uninterrupted_run(
        tmp_path, "rlvr_tiny", ["recipe.prompts_per_step=8", "recipe.answers_per_prompt=4", "recipe.eval_size=16",
                                "distributed.rollout_workers=1"])


def test_async_mode_samples_each_step_with_the_weights_its_schedule_says(tmp_path):
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "rlvr_tiny", "steps=8", "save_every=8",
                          "eval.every=4", "threads=1", "recipe.eval_size=16", "distributed.rollout_workers=1",
                          "distributed.max_staleness=2", f"output_dir={tmp_path}"], env=ENV, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = read_metrics(tmp_path)
    # sync points: the start and the evaluation after step 4: w(j) = 0 0 0 1 4 4 4 5
    assert [r["staleness"] for r in rows] == [0, 1, 2, 2, 0, 1, 2, 2]
    for r in rows:  # the behaviour log-probs are those of the weights the schedule names
        if r["staleness"] == 0:
            assert r["loss/sampler_logprob_gap"] < 1e-5
        else:  # older weights than the learner's (lr 3e-3 moves a tiny model fast)
            assert r["loss/sampler_logprob_gap"] > 1e-2
    assert "eval/arithmetic/accuracy" in rows[3] and "eval/arithmetic/accuracy" in rows[7]


@pytest.mark.parametrize("recipe", sorted(CONTRACT))
def test_every_recipe_resumes_exactly_after_sigkill_in_async_mode(tmp_path, recipe):
    preset, overrides = CONTRACT[recipe]
    if recipe == "spiral":  # a past-opponent snapshot at step 5: a sync point of the recipe's own
        overrides = [*overrides, "recipe.past_opponents.fraction=0.5", "recipe.past_opponents.every=5"]
    rows = assert_resume_after_sigkill_equals_an_uninterrupted_run(
        tmp_path, preset, [*overrides, "distributed.rollout_workers=1", "distributed.max_staleness=2"])
    # checkpoints every 3 steps and evaluations every 4 (and spiral's snapshot at 5) drain the pipeline
    assert [r["staleness"] for r in rows] == ([0, 1, 2, 0, 0, 0, 0, 1] if recipe == "spiral" else
                                              [0, 1, 2, 0, 0, 1, 0, 1])


def test_with_lora_the_async_reference_is_a_frozen_copy_of_the_base_not_the_trained_model(tmp_path):
    import torch

    from selfplay.models.lora import WithoutAdapter

    cfg = load_config(resolve_preset("rlvr_tiny"),
                      ["steps=2", "threads=1", "eval.every=0", "model.lora={r: 4, alpha: 8}", "optim.kl_coef=0.1",
                       "recipe.prompts_per_step=8", "distributed.rollout_workers=1", "distributed.max_staleness=1"])
    trainer = Trainer(cfg, tmp_path)
    trainer.train()
    reference = trainer.policy.reference
    assert not isinstance(reference, WithoutAdapter)
    base, _ = load_model("tiny", seed=0)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(reference(input_ids=ids).logits, base(input_ids=ids).logits)
        assert not torch.equal(trainer.policy.model(input_ids=ids).logits, base(input_ids=ids).logits)  # trained
    assert read_metrics(tmp_path)[-1]["loss/kl"] > 0


def test_workers_the_cluster_has_no_room_for_fail_at_start_not_wait_forever(tmp_path):
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "rlvr_tiny", "steps=1",
                          "distributed.rollout_workers=2", "distributed.cpus_per_worker=1000",
                          f"output_dir={tmp_path}"], env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert ("config error: distributed.rollout_workers=2 x distributed.cpus_per_worker=1000 needs 2000 CPUs, "
            "and the Ray cluster (local) has") in out.stderr.splitlines()[-1]


def test_learner_processes_on_ray_train_one_run_with_the_metrics_of_one_process_and_resume(tmp_path):
    """`distributed.learners=2`: two Ray actors form the process group torchrun would; one run
    folder, per step the one-process metrics; stopped after step 3 and resumed, it goes on."""
    from tests.test_distributed import assert_one_process_metrics, run_cli

    common = ["rlvr_tiny", "eval.every=1", "threads=1", "optim.micro_batch_size=128", "save_every=3"]
    two = run_cli([*common, "steps=3", "distributed.learners=2", f"output_dir={tmp_path / 'two'}"])
    assert two.returncode == 0, two.stderr[-2000:]
    assert "2 learner processes" in two.stderr and two.stderr.count("done:") == 1
    resumed = run_cli(["--resume", str(tmp_path / "two"), "steps=4"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    one = run_cli([*common, "steps=4", f"output_dir={tmp_path / 'one'}"])
    assert one.returncode == 0, one.stderr[-2000:]
    assert [r["step"] for r in assert_one_process_metrics(tmp_path / "one", tmp_path / "two")] == [1, 2, 3, 4]


def test_a_learner_process_that_fails_stops_the_run_with_its_error_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "rlvr_tiny", "steps=2",
                          f"model.name={tmp_path / 'no-model'}", "distributed.learners=2", f"output_dir={tmp_path / 'run'}"],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "Unhandled error" not in out.stderr
    assert out.stderr.splitlines()[-1].startswith("error: learner process ")
    assert out.stderr.splitlines()[-1].endswith(f"failed: model folder '{tmp_path / 'no-model'}' does not exist")


def test_more_learner_processes_than_the_cluster_has_room_for_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "rlvr_tiny", "steps=1",
                          "distributed.learners=2", "distributed.cpus_per_learner=1000", f"output_dir={tmp_path}"],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert ("config error: distributed.learners=2 x distributed.cpus_per_learner=1000 needs 2000 CPUs"
            in out.stderr.splitlines()[-1])


def test_a_cluster_address_that_does_not_answer_fails_in_seconds_naming_it(tmp_path):
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "rlvr_tiny", "steps=1",
                          "distributed.rollout_workers=1", "distributed.address=127.0.0.1:9",
                          f"output_dir={tmp_path}"], env=ENV, capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "no Ray cluster answers at distributed.address='127.0.0.1:9'" in out.stderr.splitlines()[-1]
    assert time.time() - start < 60
