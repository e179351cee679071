"""Data-parallel training and sharded evaluation on PyTorch's own engine (torchrun, DDP).

``torchrun`` starts one process per device and sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``;
:func:`session` joins its process group (NCCL on CUDA, gloo on the CPU). The trainer then
wraps the model in :class:`~torch.nn.parallel.DistributedDataParallel` and gives rank ``r`` the
``r``-th contiguous slice of every global batch (see :func:`shard_bounds`): the global order,
batch size, run id and checkpoints are those of a single-process run, so a run resumes at its
saved global step under any world size. Rank 0 alone reads and writes the run folder; what it
decides reaches the other ranks through :func:`on_main`.

Cross-rank BatchNorm: :class:`torch.nn.SyncBatchNorm` on CUDA (through timm's converter, which
also handles timm's norm + act layers); torch's refuses CPU tensors, so on the CPU
:class:`CpuSyncBatchNorm` gathers per-rank (count, mean, M2) with an autograd-aware all-reduce
and merges them (Chan et al.), which is the same statistic up to floating-point order.
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
import torch.nn.functional as F
from torch import nn

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


class _AllReduceSum(torch.autograd.Function):
    """All-reduce (sum) whose backward sums the gradients over ranks too: the objective is the
    sum of the ranks' losses, as with DDP and SyncBatchNorm. (torch.distributed.nn's version is
    deprecated and its replacement has no autograd.)"""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d over the global batch of all ranks, for gloo/CPU (torch's SyncBatchNorm is
    CUDA-only). Eval mode and single-process runs are plain BatchNorm2d; the state dict is
    BatchNorm2d's, so checkpoints load into the unconverted model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world().size == 1:
            return super().forward(x)
        w = world()
        xf = x if x.dtype == torch.float64 else x.float()  # statistics in fp32 at least
        count = xf.numel() // xf.shape[1]
        mean = xf.mean((0, 2, 3))
        m2 = (xf - mean[None, :, None, None]).pow(2).sum((0, 2, 3))
        mine = torch.cat([mean, m2, mean.new_tensor([count])])[None]
        rows = F.pad(mine, (0, 0, w.rank, w.size - w.rank - 1))  # this rank's row of (size, 2C+1)
        rows = _AllReduceSum.apply(rows)
        c = x.shape[1]
        counts = rows[:, -1:]
        total = counts.sum()
        g_mean = (counts * rows[:, :c]).sum(0) / total
        g_m2 = (rows[:, c : 2 * c] + counts * (rows[:, :c] - g_mean).pow(2)).sum(0)
        var = g_m2 / total
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum
                if momentum is None:
                    momentum = 1.0 / float(self.num_batches_tracked)
                unbiased = g_m2 / (total - 1).clamp(min=1)
                self.running_mean.lerp_(g_mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        y = (xf - g_mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


class CpuSyncBatchNormAct(CpuSyncBatchNorm):
    """:class:`CpuSyncBatchNorm` for timm's ``BatchNormAct2d`` (norm, then its drop and act)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


def sync_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """The model with every BatchNorm2d normalising over the global batch."""
    if device.type == "cuda":
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(model)
    return _convert_cpu(model)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CpuSyncBatchNorm):
        act = hasattr(module, "act") and hasattr(module, "drop")  # timm's BatchNormAct2d
        cls = CpuSyncBatchNormAct if act else CpuSyncBatchNorm
        out = cls(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if act:
            out.act, out.drop = module.act, module.drop
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out  # a norm layer's only children are timm's act and drop, carried over
    for name, child in module.named_children():
        module.add_module(name, _convert_cpu(child))
    return module
