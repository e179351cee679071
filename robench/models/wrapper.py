"""The normalisation layer: models take pixels in [0, 1] (the RobustBench convention).

Corruptions, attacks (their epsilon is in pixel units) and OOD sets all work in pixel space, so the
mean/std normalisation a network was trained with lives inside the model, not in the data pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalized(nn.Module):
    """Wraps ``model`` so that ``forward`` takes float (N, 3, H, W) in [0, 1] and returns logits.

    ``mean`` and ``std`` are persistent buffers, so a checkpoint records the normalisation its
    weights were trained with.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 channel values, got {mean} and {std}")
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)
