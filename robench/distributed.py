"""Data-parallel training and sharded evaluation on PyTorch's own engine (torchrun, DDP).

``torchrun`` starts one process per device and sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``;
:func:`session` joins its process group (NCCL on CUDA, gloo on the CPU). The trainer then
wraps the model in :class:`~torch.nn.parallel.DistributedDataParallel` and gives rank ``r`` the
``r``-th contiguous slice of every global batch (see :func:`shard_bounds`): the global order,
batch size, run id and checkpoints are those of a single-process run, so a run resumes at its
saved global step under any world size. Rank 0 alone reads and writes the run folder; what it
decides reaches the other ranks through :func:`on_main`.

Shared infrastructure below the stages: training shards its batches with it, evaluation its
test sets, the pipeline its run-folder decisions. Cross-rank BatchNorm is training's own
(:mod:`robench.training.sync_batchnorm`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from robench.errors import ConfigError, RankError, RobenchError, one_line

T = TypeVar("T")

BACKENDS = ("auto", "nccl", "gloo")

# A gloo group beside an NCCL one: small host-side exchanges (flags, pickled objects) that would
# otherwise make every step wait for the GPU.
_host_group: dist.ProcessGroup | None = None


@dataclass(frozen=True)
class World:
    """This process's place in the process group (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", 0))
        return World(dist.get_rank(), dist.get_world_size(), local)
    return World()


def launched() -> bool:
    """Started by torchrun (or any launcher setting the env rendezvous) with several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def session(
    device_type: str, backend: str = "auto", timeout_minutes: float = 30.0
) -> Iterator[World]:
    """Join the launcher's process group for the duration, and leave it cleanly.

    A no-op outside torchrun and when the group is already up (``train`` calls ``evaluate``).
    ``timeout_minutes`` bounds every collective, so a rank that died without torchrun noticing
    cannot hang the others forever.
    """
    if not launched() or dist.is_initialized():
        yield world()
        return
    if backend not in BACKENDS:
        allowed = " | ".join(BACKENDS)
        raise ConfigError(f"train.dist_backend must be one of {allowed}, got {backend!r}")
    if backend == "auto":
        backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl" and device_type != "cuda":
        raise ConfigError("train.dist_backend = 'nccl' needs CUDA devices; use 'gloo' on the CPU")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device_id = None
    if device_type == "cuda":
        if local >= torch.cuda.device_count():
            raise RobenchError(
                f"LOCAL_RANK {local} but this node sees {torch.cuda.device_count()} CUDA "
                "devices; lower torchrun --nproc_per_node or set CUDA_VISIBLE_DEVICES"
            )
        torch.cuda.set_device(local)
        device_id = torch.device("cuda", local) if backend == "nccl" else None
    global _host_group
    timeout = timedelta(minutes=timeout_minutes)
    dist.init_process_group(backend, timeout=timeout, device_id=device_id)
    _host_group = dist.new_group(backend="gloo", timeout=timeout) if backend == "nccl" else None
    try:
        yield world()
    finally:
        _host_group = None
        dist.destroy_process_group()


def rank_device(device: torch.device) -> torch.device:
    """Each rank's own GPU (``cuda:LOCAL_RANK``); the CPU is shared."""
    w = world()
    if device.type == "cuda" and w.size > 1:
        return torch.device("cuda", w.local_rank)
    return device


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result (or its error) to every rank: decisions
    that read or write the run folder are taken once, and need no shared file system."""
    w = world()
    if w.size == 1:
        return fn()
    box: list[Any] = [None]
    error: RobenchError | None = None
    if w.main:
        try:
            box = [("ok", fn())]
        except RobenchError as err:
            error, box = err, [("error", one_line(err))]
    dist.broadcast_object_list(box, src=0, group=_host_group)
    if error is not None:
        raise error
    status, value = box[0]
    if status == "error":
        raise RankError(f"rank 0 failed: {value}")
    return value


def barrier() -> None:
    if world().size > 1:
        dist.barrier(group=_host_group)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum over ranks (a copy; ``values`` itself is left as it is)."""
    values = values.clone()
    if world().size > 1:
        dist.all_reduce(values)
    return values


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one: keeps collective decisions in step."""
    if world().size == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_host_group)
    return bool(t.item())


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """The contiguous slice ``[lo, hi)`` of ``n`` items that ``rank`` of ``size`` takes: the
    first ``n % size`` ranks take one item more, so the slices tile ``0..n`` in rank order."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def gather_rows(local: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """Each rank's :func:`shard_bounds` slice of ``n`` rows, concatenated in rank order on every
    rank (on the CPU). ``device`` is where the collective runs (the rank's GPU for NCCL)."""
    w = world()
    if w.size == 1:
        return local
    sizes = [hi - lo for lo, hi in (shard_bounds(n, r, w.size) for r in range(w.size))]
    padded = local.new_zeros((max(sizes), *local.shape[1:]), device=device)
    padded[: len(local)] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(w.size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)]).cpu()
