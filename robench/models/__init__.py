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

from robench.errors import ConfigError, first_line
from robench.models import allconv, densenet_cifar, resnet_cifar, resnext_cifar, wrn
from robench.models.wrapper import Normalized

__all__ = [
    "CIFAR_MODELS",
    "Normalized",
    "architecture",
    "count_parameters",
    "create_model",
    "create_net",
]

_FAMILIES = (wrn, resnet_cifar, resnext_cifar, densenet_cifar, allconv)

#: the CIFAR architectures registered in timm by this package
CIFAR_MODELS: list[str] = timm.list_models(
    module=[m.__name__.rpartition(".")[2] for m in _FAMILIES]
)


def create_model(
    name: str,
    num_classes: int,
    *,
    drop_rate: float | None = None,
    pretrained: bool = False,
    **kwargs: Any,
) -> Normalized:
    """Build timm model ``name`` wrapped to take pixels in [0, 1].

    ``drop_rate=None`` keeps the architecture's own default (0.0, or 0.5 for ``allconv`` whose
    code hard-codes it), so a config that says nothing gets the official network.
    ``pretrained=True`` starts from timm's weights (see :func:`create_net`). Other keyword
    arguments go to the model's constructor. The normalisation comes from the model's
    ``pretrained_cfg`` (mean/std 0.5 for the CIFAR models), ImageNet's when the cfg lacks one.
    """
    model = create_net(name, num_classes, drop_rate=drop_rate, pretrained=pretrained, **kwargs)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = cfg.get("mean") or IMAGENET_DEFAULT_MEAN
    std = cfg.get("std") or IMAGENET_DEFAULT_STD
    return Normalized(model, mean, std)


def create_net(
    name: str, num_classes: int | None = None, *, pretrained: bool = False, **kwargs: Any
) -> nn.Module:
    """The bare timm network ``name`` (``num_classes=None``: its default head).

    ``pretrained=True`` loads timm's weights for it: from timm's cache (or the hub when online),
    or from a local file named by ``pretrained_cfg_overlay={"file": PATH}``.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown model {name!r}{hint}; `robench list` or timm.list_models() lists the names"
        )
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except OSError as err:  # not in timm's cache and no network; a missing overlay file
        if not pretrained:
            raise
        raise ConfigError(
            f"timm's pretrained weights for {name!r} cannot be loaded ({first_line(err)}); "
            "offline, put them in timm's cache (HF_HOME) or name a local copy with "
            'pretrained_cfg_overlay = {file = "PATH"} (robench evaluate: --pretrained PATH)'
        ) from None


def architecture(net: nn.Module) -> str:
    """A network's timm architecture name (its class name if it is not a timm model)."""
    cfg = getattr(net, "pretrained_cfg", None) or {}
    return cfg.get("architecture") or type(net).__name__


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
