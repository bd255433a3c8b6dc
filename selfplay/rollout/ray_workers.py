"""`distributed.rollout_workers: N`: generation on N Ray actors, behind the `Generator` interface.

    generator = RayGenerator(model_name, seed, workers=2, threads=1)
    generator.load_weights(policy.sampler_weights())   # after every update: one copy into the object store
    generator.use(generator.publish(weights))          # the same in two moves (asynchronous mode:
                                                       # publish after the update, use when sampling)
    generator.generate(prompts, params, seed)           # the prompts split over the workers
    generator.engine(params).step(requests, seed)       # token scheduling, requests spread over the workers

Each worker is a Ray actor with its own copy of the model and an `HFGenerator` (with
`backend: vllm`, a vLLM engine of its own, started from the model's weights); the recipe's
episode logic stays in the trainer's process and hands the workers prompts, so every recipe
runs on workers unchanged. The learner puts its new weights into Ray's object store once per
update; a worker fetches them before its next call (the weights' version travels with every
call). Asynchronous mode (selfplay.rollout.pipeline) keeps the last `keep_versions` versions in
the store, for batches sampled with weights a few updates old.

One worker gives exactly the in-process samples (same generator, same seed). With N > 1 a
`generate` call gives worker i the i-th contiguous share of the prompts and the seed
`derive_seed(seed, i)`.

A worker that dies (SIGKILL, out of memory, a lost node) is restarted by Ray, which runs the
call again on the new actor; the new actor first loads the current weights, and the call's seed
is the same, so it returns the samples the dead one would have: none lost, none counted twice.

`ray.init` joins `distributed.address` (a cluster started with `ray start --head`), or starts a
local Ray instance. An address that does not answer fails in seconds, naming the address.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping, Sequence

import torch

from selfplay.models.generation import Generation, SamplingParams

def ray_install_hint(what: str = "distributed.rollout_workers") -> str:
    return f"{what} needs Ray: pip install 'selfplay[ray]'"


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def connect(address: str | None, timeout_s: float = 5.0) -> None:
    """Join the Ray cluster at `address` (host:port of `ray start --head`), or start a local one."""
    import ray

    if ray.is_initialized():
        return
    if address and address != "auto":
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
        except (OSError, ValueError) as error:
            raise ConnectionError(f"no Ray cluster answers at distributed.address={address!r} within "
                                  f"{timeout_s:g} s ({error}); start one with `ray start --head` there") from error
    ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"SELFPLAY_NO_PROGRESS": "1"}})


def check_resources(workers: int, cpus: float, gpus: float, address: str | None, *,
                    what: str = "distributed.rollout_workers",
                    keys: tuple[str, str] = ("cpus_per_worker", "gpus_per_worker")) -> None:
    """Fail now, in one line, where Ray would otherwise wait forever for room to place the workers
    (workers that only wait for others to finish are Ray's to schedule)."""
    import ray

    from selfplay.config import ConfigError  # selfplay.config imports the recipes, which import this package

    total = ray.cluster_resources()
    for kind, each, key in (("CPU", cpus, keys[0]), ("GPU", gpus, keys[1])):
        need = workers * each
        if need and total.get(kind, 0.0) + 1e-9 < need:
            raise ConfigError(f"{what}={workers} x distributed.{key}={each:g} needs {need:g} "
                              f"{kind}s, and the Ray cluster ({address or 'local'}) has {total.get(kind, 0.0):g}: "
                              f"use fewer workers, a smaller {key}, or a larger cluster")


def worker_seed(seed: int | None, worker: int, workers: int) -> int | None:
    """A call's seed on one of `workers`: the call's own with one worker (the in-process samples)."""
    from selfplay.seeding import derive_seed

    return seed if workers == 1 or seed is None else derive_seed(seed, worker, "generation")


class Worker:
    """One rollout worker (a Ray actor): a model, its generator, and the weights' version it holds."""

    def __init__(self, model_name: str, seed: int, threads: int | None, max_batch_size: int | None,
                 vllm_settings=None, dtype: torch.dtype | None = None, reuse_prefix: bool = True):
        from selfplay.models import HFGenerator, load_model

        if threads:
            torch.set_num_threads(threads)
        model, tokenizer = load_model(model_name, dtype=dtype or "auto", seed=seed)
        if vllm_settings is None:
            self.generator = HFGenerator(model, tokenizer, max_batch_size=max_batch_size, reuse_prefix=reuse_prefix)
        else:  # the engine holds the weights from here on; the learner's arrive with the first call
            from selfplay.models.vllm_generator import VLLMGenerator

            self.generator = VLLMGenerator.start(model, tokenizer, vllm_settings, dtype=model.dtype, seed=seed,
                                                 max_batch_size=max_batch_size)
        self.version = -1  # no weights of the learner's yet
        self.engines: dict[int, object] = {}

    def pid(self) -> int:
        return os.getpid()

    def _sync(self, weights: list) -> None:
        version, ref = weights[0]  # in a list: Ray passes it as a reference, fetched only when needed
        if version != self.version:
            import ray

            self.generator.load_weights(ray.get(ref))
            self.version = version

    def generate(self, weights: list, prompts, params: SamplingParams, seed: int | None) -> list[Generation]:
        self._sync(weights)
        return self.generator.generate(prompts, params, seed=seed)

    def engine_step(self, weights: list, engine_id: int, params: SamplingParams, requests, seed: int | None):
        """One token for every request in flight; returns the finished ones and the keys still running."""
        self._sync(weights)
        if engine_id not in self.engines:
            self.engines = {engine_id: self.generator.engine(params)}  # one engine in flight at a time
        engine = self.engines[engine_id]
        done = engine.step(requests, seed=seed)
        return done, engine.running_keys()


class RayGenerator:
    def __init__(self, model_name: str, seed: int, workers: int, *, threads: int | None = None,
                 max_batch_size: int | None = None, address: str | None = None, cpus_per_worker: float = 1.0,
                 gpus_per_worker: float = 0.0, keep_versions: int = 1, vllm_settings=None,
                 dtype: torch.dtype | None = None, reuse_prefix: bool = True):
        if not ray_available():
            raise ImportError(ray_install_hint())
        import ray

        connect(address)
        check_resources(workers, cpus_per_worker, gpus_per_worker, address)
        actor = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=-1,
                           max_task_retries=-1)(Worker)
        self.workers = [actor.remote(model_name, seed, threads, max_batch_size, vllm_settings, dtype, reuse_prefix)
                        for _ in range(workers)]
        self.max_batch_size, self.keep_versions = max_batch_size, keep_versions
        self.versions: dict[int, object] = {}  # version -> its weights in the object store
        self.latest = -1
        self.weights: list = [(-1, None)]  # what every call carries: the version it samples with
        self._engines = 0

    def load_weights(self, state_dict: Mapping[str, torch.Tensor] | None) -> None:
        """Put the new weights in the object store once; each worker fetches them on its next call."""
        if state_dict is not None:
            self.use(self.publish(state_dict))

    def publish(self, state_dict: Mapping[str, torch.Tensor]) -> int:
        """Put new weights in the object store as the next version (the calls go on with theirs)."""
        import ray

        self.latest += 1
        self.versions[self.latest] = ray.put({k: v.detach().cpu() for k, v in state_dict.items()})
        for version in [v for v in self.versions if v <= self.latest - self.keep_versions]:
            del self.versions[version]  # a call in flight keeps its own reference
        return self.latest

    def use(self, version: int) -> None:
        """Sample with a published version from the next call on."""
        if version not in self.versions:
            raise KeyError(f"weights version {version} is not kept (kept: {sorted(self.versions)})")
        self.weights = [(version, self.versions[version])]

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams,
                 seed: int | None = None) -> list[Generation]:
        import ray

        if not prompts:
            return []
        n = min(len(self.workers), len(prompts))
        bounds = [len(prompts) * i // n for i in range(n + 1)]
        calls = [self.workers[i].generate.remote(
                     self.weights, [list(p) for p in prompts[bounds[i]:bounds[i + 1]]], params, worker_seed(seed, i, n))
                 for i in range(n)]
        return [g for share in ray.get(calls) for g in share]

    def engine(self, params: SamplingParams) -> "RayEngine":
        self._engines += 1
        return RayEngine(self, self._engines, params)

    def pids(self) -> list[int]:
        import ray

        return ray.get([w.pid.remote() for w in self.workers])

    def close(self) -> None:
        import ray

        for worker in self.workers:
            ray.kill(worker)
        self.workers = []


class RayEngine:
    """Token scheduling over the workers: each new request goes to the worker with the fewest in
    flight, and one `step` moves every busy worker by one token, in parallel. A restarted worker
    has lost its answers in flight: they are asked again from the start (dropped, never half-counted)."""

    def __init__(self, generator: RayGenerator, engine_id: int, params: SamplingParams):
        self.generator, self.engine_id, self.params = generator, engine_id, params
        self.in_flight: list[dict] = [{} for _ in generator.workers]  # per worker: key -> request
        self.lost: list[list] = [[] for _ in generator.workers]  # requests to ask again

    @property
    def running(self) -> int:
        return sum(len(f) for f in self.in_flight)

    def step(self, requests, seed: int | None = None) -> list[tuple[object, Generation]]:
        import ray

        shares = [self.lost[i] for i in range(len(self.in_flight))]
        self.lost = [[] for _ in self.in_flight]
        for request in requests:
            i = min(range(len(shares)), key=lambda w: len(self.in_flight[w]) + len(shares[w]))
            shares[i].append(request)
        busy = [i for i in range(len(shares)) if self.in_flight[i] or shares[i]]
        calls = [self.generator.workers[i].engine_step.remote(
                     self.generator.weights, self.engine_id, self.params, shares[i], worker_seed(seed, i, len(shares)))
                 for i in busy]
        finished = []
        for i, (done, running) in zip(busy, ray.get(calls)):
            self.in_flight[i].update({request[0]: request for request in shares[i]})
            for key, _ in done:
                del self.in_flight[i][key]
            running = set(running)
            self.lost[i] = [r for key, r in self.in_flight[i].items() if key not in running]
            finished += done
        return finished
