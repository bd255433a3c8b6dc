"""Several learner processes (selfplay.distributed) against one: real torch.distributed (gloo, 2
processes on this CPU), the real tiny model, and `torchrun` on the real CLI."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from selfplay import distributed
from selfplay.algorithms import Learner, LearnerSettings
from selfplay.models import load_model
from tests.test_learner import BATCH, make_samples

SETTINGS = dict(lr=1e-2, epochs=2, loss_norm="token_mean", kl_coef=0.1, entropy_coef=0.01, grad_clip=1.0)


def update(micro_batch_size: int, out: Path | None = None):
    """One update of the tiny model on BATCH, with a frozen reference that differs from it."""
    model, tokenizer = load_model("tiny", seed=0)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    learner = Learner(model, LearnerSettings(micro_batch_size=micro_batch_size, **SETTINGS), ref_model=reference)
    stats = learner.update(make_samples(tokenizer, BATCH))
    return stats, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _rank(rank: int, size: int, store: str, micro_batch_size: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    torch.set_num_threads(1)
    try:
        assert distributed.world() == distributed.World(rank, size)
        torch.save(update(micro_batch_size), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("micro_batch_size", [1, 2, 3])
def test_two_learner_processes_make_the_one_process_update(tmp_path, micro_batch_size):
    """3 samples in micro-batches of 1 (rank 0 trains on 2, rank 1 on 1), of 2 (one each, of
    different sizes) and of 3 (rank 1 trains on none): the same stats and weights as one process,
    up to the order of float sums, and the same on both ranks."""
    mp.spawn(_rank, args=(2, str(tmp_path / "store"), micro_batch_size, str(tmp_path)), nprocs=2, join=True)
    one_stats, one_weights = update(micro_batch_size)
    (stats0, weights0), (stats1, weights1) = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert stats0 == stats1
    assert all(torch.equal(weights0[k], weights1[k]) for k in weights0)  # identical: the same all-reduce
    assert stats0.keys() == one_stats.keys()
    for key, value in one_stats.items():
        assert stats0[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    changed = 0
    for key, tensor in one_weights.items():
        torch.testing.assert_close(weights0[key], tensor, rtol=1e-4, atol=1e-5)  # Adam amplifies float-order noise in tiny gradients
        changed += not torch.equal(tensor, load_model("tiny", seed=0)[0].state_dict()[key])
    assert changed  # the update moved the weights


def test_one_process_is_rank_0_of_1_and_trains_on_every_micro_batch():
    assert distributed.world() == distributed.World(0, 1) and distributed.world().is_main
    assert distributed.my_share(3) == [0, 1, 2]


def run_cli(args, env_extra=None, torchrun=False):
    env = {**os.environ, "SELFPLAY_NO_PROGRESS": "1", **(env_extra or {})}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(free_port())] if torchrun else [sys.executable]
    return subprocess.run([*launcher, "-m", "selfplay.cli", "train", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_one_process_metrics(one: Path, several: Path) -> list[dict]:
    """The run of several processes logged one row per step (only process 0 logs), each with the
    one-process run's metrics but timings, to float tolerance; returns its rows."""
    a, b = metrics(one), metrics(several)
    assert [r["step"] for r in b] == [r["step"] for r in a]
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if not key.startswith(("time/", "throughput/")):
                assert y[key] == pytest.approx(x[key], rel=1e-5, abs=1e-7), (x["step"], key)
    return b


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_torchrun_trains_one_run_with_the_metrics_of_one_process_and_resumes(tmp_path):
    """`torchrun --nproc_per_node 2 -m selfplay.cli train`: one run folder written by process 0,
    and per step the metrics of the one-process run (sampling included: the weights agree);
    stopped after step 3 and resumed by torchrun, it goes on as the one-process run does."""
    common = ["rlvr_tiny", "eval.every=1", "threads=1", "optim.micro_batch_size=128", "save_every=3"]
    two = run_cli([*common, "steps=3", f"output_dir={tmp_path / 'two'}"], torchrun=True)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "2 learner processes" in two.stderr and two.stderr.count("run folder:") == 1
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["step-000003"]
    resumed = run_cli(["--resume", str(tmp_path / "two"), "steps=4"], torchrun=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    one = run_cli([*common, "steps=4", f"output_dir={tmp_path / 'one'}"])
    assert one.returncode == 0, one.stderr[-2000:]
    b = assert_one_process_metrics(tmp_path / "one", tmp_path / "two")
    assert all("eval/arithmetic/accuracy" in row for row in b)
