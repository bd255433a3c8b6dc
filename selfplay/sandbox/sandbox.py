"""The caller's side of the sandbox: start workers, send programs, read results as text.

    with Sandbox() as box:
        r = box.call("def f(a, b):\n    return a + b", args="1, 2")
        r.status, r.value          # ('ok', '3')

Nothing model-written runs in this process: programs go to worker processes (worker.py)
as JSON text and results come back as JSON text whose `value` is canonical literal text,
parsed (when you ask) with `ast.literal_eval` only.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import random
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Iterable

from selfplay.sandbox.static import static_check
from selfplay.sandbox.values import parse_value

log = logging.getLogger("selfplay.sandbox")

STATUSES = ("ok", "error", "timeout", "memory", "killed", "rejected")
# Always on: they are how the sandbox works, not features of the machine.
BASE_LAYERS = ("process", "empty_env", "fork_per_program", "values_as_text", "wall_clock")
# Tried at start; each may be unavailable on a machine (the sandbox says which).
OPTIONAL_LAYERS = ("user_ns", "net_ns", "ipc_ns", "mount_ns", "pid_ns", "no_capabilities", "seccomp", "rlimits")
LAYERS = BASE_LAYERS + OPTIONAL_LAYERS
LAYER_DESCRIPTIONS = {
    "process": "programs run in separate worker processes, never in the caller",
    "empty_env": "workers start with an empty environment and a minimal import set",
    "fork_per_program": "a fresh forked process per program; scratch emptied between programs",
    "values_as_text": "results cross as canonical text of built-in types, parsed with literal_eval",
    "wall_clock": "SIGKILL at the wall-clock deadline (catches sleeps and ignored signals)",
    "user_ns": "user namespace (root inside maps to the caller's uid outside)",
    "net_ns": "network namespace: no interfaces but a downed loopback",
    "ipc_ns": "IPC and UTS namespaces: no shared memory or semaphores with the host",
    "mount_ns": "read-only root with only system libraries and the stdlib; private size-limited /tmp",
    "pid_ns": "pid namespace: no view of host processes; everything dies with the worker",
    "no_capabilities": "all capabilities dropped, no_new_privs set",
    "seccomp": "seccomp filter: no fork/clone/exec, sockets, kill, ptrace, mount",
    "rlimits": "address space, CPU seconds, file size, open files, processes",
}


class SandboxUnavailable(RuntimeError):
    """The sandbox could not start, or lacks a layer the config requires."""


class _WorkerFailed(Exception):
    pass


@dataclass(frozen=True)
class Result:
    status: str  # one of STATUSES
    value: str | None = None  # canonical literal text of the returned value (status "ok")
    error: str | None = None  # "Type: message"
    stdout: str = ""  # what the program printed, capped
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def parsed(self):
        """The returned value as a Python object, rebuilt from text with literal_eval."""
        if self.status != "ok":
            raise ValueError(f"no value: status {self.status} ({self.error})")
        return parse_value(self.value)


@dataclass(frozen=True)
class Call:
    """One program to run: define `program`, then call `function(<args>)`."""

    program: str
    args: str = ""  # literal text, e.g. "1, [2, 3], key='x'"
    function: str = "f"
    timeout_s: float | None = None
    memory_mb: int | None = None
    banned_modules: tuple[str, ...] | None = None  # static rejection; None: the config's


@dataclass(frozen=True)
class Determinism:
    deterministic: bool
    first: Result
    second: Result


@dataclass(frozen=True)
class SandboxConfig:
    workers: int = 2
    timeout_s: float = 5.0
    memory_mb: int = 256  # address space a program may add to the worker's (~30 MB)
    stdout_max: int = 10_000
    value_max: int = 100_000
    scratch_mb: int = 16  # size of each worker's private /tmp, and the file size limit
    layers: tuple[str, ...] = OPTIONAL_LAYERS  # which optional layers to try
    require: tuple[str, ...] = ()  # refuse to start without these; ("all",) means every one tried
    readonly_paths: tuple[str, ...] = ()  # host paths programs may read (data files)
    banned_modules: tuple[str, ...] = ()  # static rejection for every call (AZR_BANNED_MODULES)
    batch_size: int = 32  # programs per request in call_many
    start_timeout_s: float = 20.0

    def __post_init__(self):
        for name in self.layers:
            if name not in OPTIONAL_LAYERS:
                raise ValueError(f"layers: unknown layer {name!r}; allowed: {', '.join(OPTIONAL_LAYERS)}")
        for name in self.require:
            if name != "all" and name not in LAYERS:
                raise ValueError(f"require: unknown layer {name!r}; allowed: all, {', '.join(LAYERS)}")
            if name in OPTIONAL_LAYERS and name not in self.layers:
                raise ValueError(f"require: {name!r} is required but not in layers")
        if self.workers < 1:
            raise ValueError("workers: must be at least 1")

    def required(self) -> tuple[str, ...]:
        return BASE_LAYERS + tuple(self.layers) if "all" in self.require else tuple(self.require)


class _Worker:
    """One worker process and the pipes to it. Not thread-safe: hold `lock`."""

    def __init__(self, config: SandboxConfig, seed: int):
        self.config, self.seed = config, seed
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.layers: dict[str, bool] = {}
        self.notes: dict[str, str] = {}
        self._buffer = b""
        self._next_id = 0

    def start(self) -> None:
        worker_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
        # -s -S -P: no user or site packages, no script directory on sys.path; -B: write no
        # bytecode. Not -E: PYTHONHASHSEED must reach the interpreter (the worker clears it).
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-S", "-P", "-B", worker_py],
            env={"PYTHONHASHSEED": str(self.seed)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            close_fds=True,
            start_new_session=True,  # a Ctrl-C in the terminal goes to the caller only
        )
        settings = {
            "layers": list(self.config.layers),
            "scratch_mb": self.config.scratch_mb,
            "readonly_paths": [os.path.abspath(p) for p in self.config.readonly_paths],
            **_compiled_filters(),
        }
        try:
            self._send(settings)
            hello = self._receive(time.monotonic() + self.config.start_timeout_s)
        except _WorkerFailed as e:
            stderr = self._stderr_tail()
            self.kill()
            raise SandboxUnavailable(f"sandbox worker failed to start: {e}\n{stderr}") from None
        self.layers, self.notes = hello["layers"], hello["notes"]
        self.proc.stderr.close()  # nothing more is written there; an undrained pipe could block

    def request(self, items: list[dict], deadline: float) -> tuple[list[dict], bool]:
        self._next_id += 1
        self._send({"id": self._next_id, "items": items})
        reply = self._receive(deadline)
        if reply.get("id") != self._next_id or len(reply.get("results", ())) != len(items):
            raise _WorkerFailed("reply does not match the request")
        return reply["results"], bool(reply.get("healthy", True))

    def _send(self, message: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as e:
            raise _WorkerFailed(f"worker is gone ({e})") from None

    def _receive(self, deadline: float) -> dict:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _WorkerFailed("worker did not answer in time")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise _WorkerFailed("worker exited")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            raise _WorkerFailed("worker sent a malformed reply") from None

    def _stderr_tail(self) -> str:
        try:
            if self.proc.poll() is None:
                return ""
            return self.proc.stderr.read()[-2000:].decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.kill()  # the init process below it gets SIGKILL, and with it the namespace
        except ProcessLookupError:
            pass
        self._close_pipes()
        self.proc.wait()
        self.proc, self._buffer = None, b""

    def close(self, wait_s: float = 2.0) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()  # EOF: the worker exits at once
        except OSError:
            pass
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass


class Sandbox:
    """Runs model-written Python in isolated worker processes. Use as a context manager."""

    def __init__(self, config: SandboxConfig | None = None, **overrides):
        self.config = replace(config or SandboxConfig(), **overrides)
        seeds = random.Random().sample(range(1, 2**32 - 1), self.config.workers + 1)
        self._workers = [_Worker(self.config, seed) for seed in seeds[:-1]]
        self._twin_seed = seeds[-1]  # a second hash seed for determinism checks with one worker
        self._twin: _Worker | None = None
        self._next = 0
        self._next_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.restarts = 0  # workers replaced after dying or overrunning (a sign of an attack)

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> "Sandbox":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        try:
            with ThreadPoolExecutor(len(self._workers)) as pool:
                list(pool.map(lambda w: w.start(), self._workers))
        except BaseException:
            self.close()
            raise
        missing = [name for name in LAYERS if not self.isolation.get(name)]
        for name in missing:
            log.warning("sandbox layer %s is not active: %s", name, self.notes.get(name, "not requested"))
        lacking = [name for name in self.config.required() if not self.isolation.get(name)]
        if lacking:
            self.close()
            reasons = "; ".join(f"{n}: {self.notes.get(n, 'not active')}" for n in lacking)
            raise SandboxUnavailable(f"required sandbox layers are not available here: {reasons}")
        self._pool = ThreadPoolExecutor(len(self._workers), thread_name_prefix="sandbox")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for worker in self._workers + ([self._twin] if self._twin else []):
            worker.close()

    @property
    def started(self) -> bool:
        """Whether `start` has run and `close` has not since."""
        return self._pool is not None

    @property
    def isolation(self) -> dict[str, bool]:
        """Which protection layers are active, by name (see LAYER_DESCRIPTIONS)."""
        layers = self._workers[0].layers
        return {name: bool(layers.get(name)) for name in LAYERS}

    @property
    def notes(self) -> dict[str, str]:
        """Why a layer is not active, by name."""
        return dict(self._workers[0].notes)

    def worker_pids(self) -> list[int]:
        """Host pids of the worker processes (the determinism twin included)."""
        workers = self._workers + ([self._twin] if self._twin else [])
        return [w.proc.pid for w in workers if w.proc is not None]

    # ------------------------------------------------------------ running programs

    def call(
        self,
        program: str,
        function: str = "f",
        args: str = "",
        timeout_s: float | None = None,
        memory_mb: int | None = None,
        banned_modules: Iterable[str] | None = None,
    ) -> Result:
        """Define `program`, call `function(<args>)`, return a Result (never raises for the program's faults)."""
        call = Call(program, args, function, timeout_s, memory_mb, _tuple(banned_modules))
        return self.call_many([call])[0]

    def call_many(self, calls: Iterable[Call | tuple[str, str]]) -> list[Result]:
        """Run many programs, spread over the workers in batches; results in the same order."""
        return self._run_many([_as_call(c) for c in calls], shift=0)

    def check_deterministic(self, program: str, function: str = "f", args: str = "", **kw) -> Determinism:
        """Run the same call in two processes with different hash seeds (and address layouts)."""
        return self.check_deterministic_many([Call(program, args, function, **kw)])[0]

    def check_deterministic_many(self, calls: Iterable[Call | tuple[str, str]]) -> list[Determinism]:
        calls = [_as_call(c) for c in calls]
        with self._next_lock:
            base = self._next
            self._next += len(calls)
        # Both passes split the calls into the same batches; batch k runs on worker base+k,
        # then on worker base+k+1: always another process, with another hash seed.
        first = self._run_many(calls, shift=0, base=base)
        second = self._run_many(calls, shift=1, base=base)
        return [
            Determinism(a.status == b.status and a.value == b.value and a.status == "ok", a, b)
            for a, b in zip(first, second)
        ]

    def _run_many(self, calls: list[Call], shift: int, base: int | None = None) -> list[Result]:
        if not self.started:
            raise RuntimeError("the sandbox is not started: use `with Sandbox() as box:` or call start()")
        results: list[Result | None] = [None] * len(calls)
        pending: list[tuple[int, dict]] = []
        for i, call in enumerate(calls):
            banned = call.banned_modules if call.banned_modules is not None else self.config.banned_modules
            reason = static_check(call.program, banned) if banned else None
            if reason is not None:
                results[i] = Result("rejected", error=f"Rejected: {reason}")
            else:
                pending.append((i, self._item(call)))
        if pending:
            n = len(self._workers)
            size = max(1, min(self.config.batch_size, -(-len(pending) // (2 * n))))
            batches = [pending[k : k + size] for k in range(0, len(pending), size)]
            if base is None:
                with self._next_lock:
                    base, self._next = self._next, self._next + len(batches)
            jobs = [(self._worker_for(base + k, shift), batch) for k, batch in enumerate(batches)]
            if len(jobs) == 1:
                done = [self._run_batch(*jobs[0])]
            else:
                done = list(self._pool.map(lambda job: self._run_batch(*job), jobs))
            for batch, batch_results in zip(batches, done):
                for (i, _), result in zip(batch, batch_results):
                    results[i] = result
        return results

    def _worker_for(self, k: int, shift: int) -> _Worker:
        n = len(self._workers)
        if shift and n == 1:
            with self._next_lock:
                if self._twin is None:
                    self._twin = _Worker(self.config, self._twin_seed)
                    self._twin.start()
            return self._twin
        return self._workers[(k + shift) % n]

    def _item(self, call: Call) -> dict:
        if not isinstance(call.program, str) or not isinstance(call.args, str) or not isinstance(call.function, str):
            raise TypeError("program, args and function must be str")
        return {
            "program": call.program,
            "function": call.function,
            "args": call.args,
            "timeout_s": float(call.timeout_s if call.timeout_s is not None else self.config.timeout_s),
            "memory_mb": int(call.memory_mb if call.memory_mb is not None else self.config.memory_mb),
            "stdout_max": self.config.stdout_max,
            "value_max": self.config.value_max,
        }

    def _run_batch(self, worker: _Worker, batch: list[tuple[int, dict]]) -> list[Result]:
        items = [item for _, item in batch]
        with worker.lock:
            try:
                raw, healthy = self._request(worker, items)
                if not healthy:
                    self._restart(worker, "scratch could not be emptied")
                return [_result(r) for r in raw]
            except _WorkerFailed as e:
                self._restart(worker, str(e))
            # The batch failed as a whole: run it again one program at a time, so only the
            # program that breaks a worker is charged for it.
            results = []
            for item in items:
                try:
                    raw, healthy = self._request(worker, [item])
                    results.append(_result(raw[0]))
                    if not healthy:
                        self._restart(worker, "scratch could not be emptied")
                except _WorkerFailed as e:
                    self._restart(worker, str(e))
                    results.append(Result("killed", error=f"Killed: the worker running it failed ({e})"))
            return results

    def _request(self, worker: _Worker, items: list[dict]) -> tuple[list[dict], bool]:
        if worker.proc is None:
            worker.start()
        # The worker enforces each program's deadline; this one only catches a stuck worker.
        deadline = time.monotonic() + sum(item["timeout_s"] for item in items) + 2.0 + 0.05 * len(items)
        return worker.request(items, deadline)

    def _restart(self, worker: _Worker, why: str) -> None:
        log.warning("sandbox worker replaced: %s", why)
        self.restarts += 1
        worker.kill()
        worker.start()


@functools.lru_cache(maxsize=1)
def _compiled_filters() -> dict:
    """Seccomp filters as BPF (hex), compiled here once: the worker only installs them."""
    from selfplay.sandbox import isolation

    machine = platform.machine()
    try:
        import pyseccomp

        pivot_root = pyseccomp.resolve_syscall(pyseccomp.system_arch(), "pivot_root")
        return {
            "seccomp": {
                "worker": isolation.compile_filter(pyseccomp, for_programs=False).hex(),
                "program": isolation.compile_filter(pyseccomp, for_programs=True).hex(),
            },
            "pivot_root": pivot_root if pivot_root >= 0 else isolation.PIVOT_ROOT.get(machine, -1),
        }
    except Exception as e:  # no libseccomp on this machine: the layer is reported missing
        return {"seccomp": None, "seccomp_note": f"libseccomp unavailable: {e}",
                "pivot_root": isolation.PIVOT_ROOT.get(machine, -1)}


def _result(raw: dict) -> Result:
    status = raw.get("status")
    if status not in STATUSES:
        return Result("error", error=f"SandboxError: unknown status {status!r}")
    value = raw.get("value")
    return Result(
        status,
        value=value if isinstance(value, str) else None,
        error=raw.get("error") if isinstance(raw.get("error"), str) else None,
        stdout=raw.get("stdout") if isinstance(raw.get("stdout"), str) else "",
        duration_s=float(raw.get("duration_s", 0.0)),
    )


def _as_call(c: Call | tuple) -> Call:
    if isinstance(c, Call):
        return c
    return Call(*c)


def _tuple(x: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if x is None else tuple(x)
