"""Several learner processes on one run: data parallel over torch.distributed.

    torchrun --nproc_per_node 2 -m selfplay.cli train rlvr_tiny          # one machine, 2 processes
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_endpoint HOST:29500 \\
        -m selfplay.cli train spiral_kuhn_qwen3_4b                       # 2 machines x 8 GPUs

Every process runs the whole loop with the same config and seed, so every process collects
the same batch (the recipe's seeds are functions of the step) and holds the same weights.
The update is what is shared out: process r takes micro-batches r, r + N, r + 2N, ... of
the batch, and the gradients are summed over processes before the clipped optimizer step.
Each micro-batch's loss already carries its share of the whole batch (learner.py), so the
summed gradient is the one-process gradient: the same update up to the order of float sums.
Summed with one all-reduce (identical on every process), the weights stay identical, so the
next step's batch is identical again.

Why not `torch.nn.parallel.DistributedDataParallel`: it all-reduces during each backward pass
and needs every process to run the same number of them, while a batch of B micro-batches
leaves some processes one fewer (or none), and the loss normalisation is the whole batch's,
not each process's mean. One flat all-reduce after the accumulation is what DDP does under
`no_sync`, without those constraints; it does not overlap communication with the backward pass.

Only process 0 writes the run folder (config, metrics, transcripts, checkpoints); every
process reads the same checkpoint on `--resume`, so on several machines the run folder must be
on a shared filesystem. The time limit is process 0's clock, broadcast. Generation is
repeated on every process: spreading it is the rollout workers' job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place: rank 0 of 1 unless a process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_env(timeout_s: float = 600.0) -> World:
    """Join the process group that torchrun describes (WORLD_SIZE > 1 in the environment):
    NCCL on GPUs, gloo on CPUs. Without torchrun, a single process: nothing to do."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
        global _joined
        _joined = True
    return world()


_joined = False  # whether init_from_env made the process group (an in-process vLLM makes its own)


def close() -> None:
    global _joined
    if _joined and dist.is_initialized():
        dist.destroy_process_group()
    _joined = False


def my_share(count: int) -> list[int]:
    """The indices of `count` micro-batches this process trains on: rank, rank + N, ..."""
    w = world()
    return list(range(w.rank, count, w.size))


def sum_gradients(params: list[torch.Tensor]) -> None:
    """Replace each parameter's gradient by its sum over processes (a missing one counts 0)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for grad, summed in zip(grads, _unflatten_dense_tensors(flat, grads)):
        grad.copy_(summed)


def sum_stats(stats: dict[str, float]) -> dict[str, float]:
    """Each statistic summed over processes. A process that trained no micro-batch of some role
    lacks its keys: the union of keys is summed, missing ones counting 0."""
    keys = sorted(set().union(*all_gather(sorted(stats))))
    values = torch.tensor([stats.get(k, 0.0) for k in keys], dtype=torch.float64)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return dict(zip(keys, values.tolist()))


def all_gather(value) -> list:
    """Every process's `value` (any picklable object), in rank order."""
    out = [None] * world().size
    dist.all_gather_object(out, value)
    return out


def agree(value):
    """Process 0's `value` on every process (a decision all must take together)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
