"""Asynchronous mode's schedule (`distributed.max_staleness`): which weights sample each step,
worked out by hand, and the collection thread that follows it. The same on real Ray workers:
tests/test_ray.py."""

from __future__ import annotations

import threading
import time

import pytest

from selfplay.config import ConfigError, load_config
from selfplay.rollout.pipeline import CollectPipeline, behaviour_version
from selfplay.trainer_cli import resolve_preset


def schedule(steps, staleness, start=0, sync=()):
    return [behaviour_version(j, staleness, start, lambda s: s in sync) for j in steps]


def test_each_step_samples_with_weights_at_most_k_updates_old_fresh_after_a_sync_point():
    # k=2, sync point 4: w(j) = max(j - 2, last sync point <= j), the run's start 0 one too
    assert schedule(range(8), 2, sync={4}) == [0, 0, 0, 1, 4, 4, 4, 5]
    # k=0 is the synchronous loop: every step samples with the newest weights
    assert schedule(range(6), 0, sync={2}) == [0, 1, 2, 3, 4, 5]
    # resumed at step 3 (a checkpoint, so a sync point of the uninterrupted run too), k=1, sync 5
    assert schedule(range(3, 8), 1, start=3, sync={5}) == [3, 3, 5, 5, 6]
    # the same steps of the uninterrupted run with its checkpoint at 3: the same weights
    assert schedule(range(3, 8), 1, sync={3, 5}) == [3, 3, 5, 5, 6]


class Recorder:
    """A job that notes the weights it sampled with and what the trainer had released then."""

    def __init__(self, fail_at=None, seconds=0.0):
        self.version, self.released, self.calls = None, -1, []
        self.fail_at, self.seconds = fail_at, seconds

    def use(self, version):
        self.version = version

    def job(self, step):
        self.calls.append((step, self.version, self.released, threading.current_thread().name))
        time.sleep(self.seconds)
        if step == self.fail_at:
            raise ValueError(f"no samples at step {step}")
        return f"batch {step}"


def run_trainer(pipeline, recorder, start, stop):
    """The trainer's side: take each step's batch, update, release the new weights."""
    batches = []
    for step in range(start, stop):
        batches.append(pipeline.get(step))
        recorder.released = step + 1
        pipeline.release(step + 1)
    pipeline.close()
    return batches


def test_the_thread_collects_in_step_order_each_with_its_weights_never_before_they_are_released():
    recorder = Recorder(seconds=0.01)
    recorder.released = 0
    sync = {4}
    pipeline = CollectPipeline(recorder.job, recorder.use, 2, lambda s: s in sync, start=0, stop=8)
    assert run_trainer(pipeline, recorder, 0, 8) == [f"batch {j}" for j in range(8)]
    assert [step for step, *_ in recorder.calls] == list(range(8))
    assert [version for _, version, _, _ in recorder.calls] == [0, 0, 0, 1, 4, 4, 4, 5]
    assert all(version <= released for _, version, released, _ in recorder.calls)
    assert {name for *_, name in recorder.calls} == {"selfplay-collect"}  # not the trainer's thread
    # at the sync point the trainer had finished step 3 before the thread began step 4
    assert recorder.calls[4][2] == 4


def test_a_collections_error_reaches_the_trainer_at_its_step():
    recorder = Recorder(fail_at=2)
    recorder.released = 0
    pipeline = CollectPipeline(recorder.job, recorder.use, 1, lambda s: False, start=0, stop=5)
    assert pipeline.get(0) == "batch 0"
    pipeline.release(1)
    assert pipeline.get(1) == "batch 1"
    pipeline.release(2)
    with pytest.raises(ValueError, match="no samples at step 2"):
        pipeline.get(2)
    with pytest.raises(RuntimeError, match="step 4 was never released"):
        pipeline.get(4)
    pipeline.close()


def test_drain_waits_for_the_collection_under_way():
    recorder = Recorder(seconds=0.3)
    pipeline = CollectPipeline(recorder.job, recorder.use, 1, lambda s: False, start=0, stop=3)
    start = time.perf_counter()
    pipeline.drain()  # steps 0 and 1 (both sample with the start's weights)
    assert time.perf_counter() - start >= 0.55
    assert [step for step, *_ in recorder.calls] == [0, 1]
    assert pipeline.get(1) == "batch 1" and pipeline.get(0) == "batch 0"
    pipeline.close()


def test_max_staleness_without_rollout_workers_is_a_one_line_error():
    with pytest.raises(ConfigError, match="max_staleness samples on Ray workers .* set distributed.rollout_workers"):
        load_config(resolve_preset("rlvr_tiny"), ["distributed.max_staleness=1"])
