"""The normalisation layer: models take pixels in [0, 1] (the RobustBench convention).

Corruptions, attacks (their epsilon is in pixel units) and OOD sets all work in pixel space, so the
mean/std normalisation a network was trained with lives inside the model, not in the data pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


def is_wrapper_state(state: Mapping[str, Any]) -> bool:
    """Whether ``state`` is a :class:`Normalized` state dict (``mean``, ``std`` and ``model.*``),
    rather than the wrapped network's own."""
    rest = set(state) - {"mean", "std"}
    return {"mean", "std"} <= set(state) and all(key.startswith("model.") for key in rest)


class Normalized(nn.Module):
    """Wraps ``model`` so that ``forward`` takes float (N, 3, H, W) in [0, 1] and returns logits.

    ``mean`` and ``std`` are persistent buffers, so a checkpoint records the normalisation its
    weights were trained with. ``source`` says where the weights came from
    (:func:`robench.models.load_model` fills it in; a saved evaluation records it).
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
        self.source: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Also takes the wrapped network's own state dict (a checkpoint saved without this
        wrapper, e.g. ``torch.save(net.state_dict())``); ``mean`` and ``std`` then stay."""
        if is_wrapper_state(state_dict):
            return super().load_state_dict(state_dict, strict, assign)
        return self.model.load_state_dict(state_dict, strict, assign)
