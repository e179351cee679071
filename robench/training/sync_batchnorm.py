"""Cross-rank BatchNorm for data-parallel training (torchrun, DDP).

:class:`torch.nn.SyncBatchNorm` on CUDA (through timm's converter, which also handles timm's
norm + act layers); torch's refuses CPU tensors, so on the CPU :class:`CpuSyncBatchNorm` gathers
per-rank (count, mean, M2) with an autograd-aware all-reduce and merges them (Chan et al.), which
is the same statistic up to floating-point order.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from robench.distributed import world


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
