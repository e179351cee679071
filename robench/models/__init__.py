"""Models: timm's registry plus the CIFAR architectures of the official AugMix/PixMix/IPMix code.

Importing this package registers the CIFAR architectures in timm's own registry, so
``timm.create_model("wrn_40_2", num_classes=10)`` works offline. :func:`create_model` builds any
timm model by name and wraps it in :class:`Normalized`, so every model takes pixels in [0, 1].
"""

from __future__ import annotations

import difflib
from typing import Any

import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from robench.errors import ConfigError
from robench.models import allconv, densenet_cifar, resnet_cifar, resnext_cifar, wrn
from robench.models.wrapper import Normalized

__all__ = ["CIFAR_MODELS", "Normalized", "count_parameters", "create_model"]

_FAMILIES = (wrn, resnet_cifar, resnext_cifar, densenet_cifar, allconv)

#: the CIFAR architectures registered in timm by this package
CIFAR_MODELS: list[str] = timm.list_models(
    module=[m.__name__.rpartition(".")[2] for m in _FAMILIES]
)


def create_model(
    name: str, num_classes: int, *, drop_rate: float | None = None, **kwargs: Any
) -> Normalized:
    """Build timm model ``name`` (random init) wrapped to take pixels in [0, 1].

    ``drop_rate=None`` keeps the architecture's own default (0.0, or 0.5 for ``allconv`` whose
    code hard-codes it), so a config that says nothing gets the official network. Other keyword
    arguments go to the model's constructor. The normalisation comes from the model's
    ``pretrained_cfg`` (mean/std 0.5 for the CIFAR models), ImageNet's when the cfg lacks one.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown model {name!r}{hint}; `robench list` or timm.list_models() lists the names"
        )
    model = timm.create_model(
        name, pretrained=False, num_classes=num_classes, drop_rate=drop_rate, **kwargs
    )
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = cfg.get("mean") or IMAGENET_DEFAULT_MEAN
    std = cfg.get("std") or IMAGENET_DEFAULT_STD
    return Normalized(model, mean, std)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
