"""`distributed.learners: N`: the learner processes of one run launched as Ray actors, the way
`torchrun --nproc_per_node N` launches them, on one machine or across a Ray cluster.

    selfplay train rlvr_tiny distributed.learners=2                      # a local Ray instance
    selfplay train CONFIG distributed.learners=16 distributed.address=HEAD:6379 \\
        distributed.gpus_per_learner=1                                   # 16 GPUs of a cluster

The `selfplay train` process only launches: it places N actors (`cpus_per_learner` and
`gpus_per_learner` each), asks the first for its node's address and a free port, and starts
the same command in every actor with torchrun's variables set (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT; LOCAL_RANK 0, since Ray gives each actor its own GPUs). From there the run is the
torchrun run of `selfplay.distributed`: the same update, process 0 writes the run folder, and
`--resume` works the same way. Each actor's messages come back when it ends; process 0's are
printed. If one actor fails, the others are stopped (they would wait on it in the next
all-reduce) and its error is printed in one line. On several machines the run folder must be
on a shared filesystem, as with torchrun.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
from argparse import Namespace


class LearnerProcess:
    """One learner process (a Ray actor)."""

    def address(self) -> tuple[str, int]:
        """This node's address and a port free on it: the process group's rendezvous."""
        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            return ray.util.get_node_ip_address(), s.getsockname()[1]

    def train(self, items: list[str], resume: str | None, env: dict[str, str]) -> tuple[int, str]:
        from selfplay.trainer_cli import run

        os.environ.update(env)
        messages = io.StringIO()
        with contextlib.redirect_stderr(messages):
            code = run(Namespace(items=items, resume=resume))
        return code, messages.getvalue()


def launch(cfg, items: list[str], resume: str | None, run_dir) -> int:
    """Run the command on `cfg.distributed.learners` Ray actors; the exit code of the run."""
    import ray

    from selfplay.rollout.ray_workers import check_resources, connect

    settings = cfg.distributed
    n = settings.learners
    connect(settings.address)
    check_resources(n, settings.cpus_per_learner, settings.gpus_per_learner, settings.address,
                    what="distributed.learners", keys=("cpus_per_learner", "gpus_per_learner"))
    actor = ray.remote(num_cpus=settings.cpus_per_learner, num_gpus=settings.gpus_per_learner)(LearnerProcess)
    processes = [actor.remote() for _ in range(n)]
    host, port = ray.get(processes[0].address.remote())
    env = {"WORLD_SIZE": str(n), "MASTER_ADDR": host, "MASTER_PORT": str(port), "LOCAL_RANK": "0",
           "LOCAL_WORLD_SIZE": "1"}
    calls = [p.train.remote(items, resume, {**env, "RANK": str(rank)}) for rank, p in enumerate(processes)]
    print(f"{n} learner processes on Ray, run folder {run_dir}: their messages follow when they end",
          file=sys.stderr)
    rank_of = {call: rank for rank, call in enumerate(calls)}
    results: dict[int, tuple[int, str]] = {}
    pending = list(calls)
    while pending:
        [done], pending = ray.wait(pending, num_returns=1)
        try:
            results[rank_of[done]] = ray.get(done)
        except ray.exceptions.RayError as error:  # an exception, or the actor died
            stop(processes, pending)
            cause = getattr(error, "cause", None) or error
            lines = str(cause).strip().splitlines() or [type(cause).__name__]
            print(f"error: learner process {rank_of[done]} failed: {lines[-1]}", file=sys.stderr)
            return 1
        code, messages = results[rank_of[done]]
        if code != 0:  # a one-line error of the command's own (the same on every process)
            stop(processes, pending)
            print(messages.rstrip() or f"error: learner process {rank_of[done]} exited with {code}", file=sys.stderr)
            return code
    print(results[0][1].rstrip(), file=sys.stderr)
    return 0


def stop(processes, pending) -> None:
    """Stop every process (the others would wait on the failed one in the next all-reduce), and
    collect their calls' errors, which Ray would otherwise print as unhandled."""
    import ray

    for p in processes:
        ray.kill(p)
    for call in pending:
        try:
            ray.get(call, timeout=30)
        except Exception:  # noqa: BLE001 (killed: expected)
            pass
