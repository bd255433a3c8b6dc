"""`distributed.max_staleness: k`: the next batches are sampled while the learner updates.

A background thread runs the recipe's `collect(j)` and `advantages(batch)` for step j, in step
order, exactly as the synchronous loop would (so the recipe's own state evolves the same way);
the trainer's thread only updates the weights, evaluates and writes checkpoints. Generation runs
on the rollout workers, so the two overlap.

Batch j is sampled with the weights after `behaviour_version(j)` updates:

    w(j) = max(j - k, the last sync point s with s <= j)

A sync point is the run's first step, every step after which the trainer evaluates or writes a
checkpoint, and every step whose collection reads the trained weights in the trainer's process
(`Recipe.reads_weights`, e.g. SPIRAL's past-opponent snapshots). The thread is idle at a sync
point: batches from it on wait for its weights, which the trainer releases after its evaluation
and checkpoint, so neither ever runs beside a collection. Samples are at most k updates old
(exactly k in the steady state), and the schedule is a function of the config alone: a run
resumed from a checkpoint (a sync point) samples what the uninterrupted run sampled.

The learner corrects for the lag with the PPO ratio against the samples' recorded behaviour
log-probs (`Learner(use_sampler_logprobs=True)`).
"""

from __future__ import annotations

import queue
import threading
from typing import Callable


def behaviour_version(step: int, staleness: int, start: int, sync_point: Callable[[int], bool]) -> int:
    """w(step): how many updates the weights that sample `step`'s batch have had."""
    for s in range(step, max(step - staleness, start), -1):
        if sync_point(s):
            return s
    return max(step - staleness, start)


class CollectPipeline:
    """Runs `job(j)` (the recipe's collection and advantages of step j) on a background thread,
    each after `use_weights(w(j))`, for steps start..stop-1."""

    def __init__(self, job: Callable[[int], object], use_weights: Callable[[int], None], staleness: int,
                 sync_point: Callable[[int], bool], start: int, stop: int):
        self.job, self.use_weights = job, use_weights
        self.staleness, self.sync_point, self.start, self.stop = staleness, sync_point, start, stop
        self.next_step = start  # the next step to hand the thread
        self.results: dict[int, object] = {}
        self.finished = start  # steps the thread has done
        self.done = threading.Condition()
        self.todo: queue.SimpleQueue = queue.SimpleQueue()
        # a daemon: a run stopped by an error or Ctrl-C does not wait for a collection to end
        self.thread = threading.Thread(target=self._work, name="selfplay-collect", daemon=True)
        self.thread.start()
        self.release(start)

    def version(self, step: int) -> int:
        return behaviour_version(step, self.staleness, self.start, self.sync_point)

    def release(self, updates: int) -> None:
        """The weights after `updates` updates may be sampled with: hand the thread every step
        whose batch they (or older ones) sample."""
        while self.next_step < self.stop and self.version(self.next_step) <= updates:
            self.todo.put(self.next_step)
            self.next_step += 1

    def get(self, step: int):
        """Step `step`'s result, once the thread has it (its exception, raised here)."""
        if step >= self.next_step:
            raise RuntimeError(f"step {step} was never released to the collector (next: {self.next_step})")
        with self.done:
            self.done.wait_for(lambda: step in self.results)
            result = self.results.pop(step)
        if isinstance(result, BaseException):
            raise result
        return result

    def drain(self) -> None:
        """Wait until the thread has done every step handed to it (it is then idle)."""
        with self.done:
            self.done.wait_for(lambda: self.finished == self.next_step)

    def close(self) -> None:
        self.todo.put(None)

    def _work(self) -> None:
        while (step := self.todo.get()) is not None:
            try:
                self.use_weights(self.version(step))
                result = self.job(step)
            except BaseException as error:  # handed to the trainer's thread by get()
                result = error
            with self.done:
                self.results[step] = result
                self.finished += 1
                self.done.notify_all()
