"""Shared timm plumbing for the CIFAR architectures of the official AugMix/PixMix/IPMix code.

Each family module registers its variants in timm's own registry, so ``timm.create_model`` builds
them like any timm model. The pretrained cfg carries no weights; it records the input convention of
the official training scripts (32x32 images normalised with mean 0.5 / std 0.5), which is where
:class:`robench.models.wrapper.Normalized` reads its mean and std from.

Module and parameter names follow the official code, so a released checkpoint loads with
``strict=True`` once DataParallel's ``module.`` prefix is stripped.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch
from timm.models import build_model_with_cfg
from torch import nn

from robench.errors import ConfigError

ModelT = TypeVar("ModelT", bound=nn.Module)

#: the official CIFAR scripts normalise with Normalize([0.5] * 3, [0.5] * 3)
CIFAR_MEAN = (0.5, 0.5, 0.5)
CIFAR_STD = (0.5, 0.5, 0.5)


def cifar_cfg(*, first_conv: str, classifier: str, **overrides: Any) -> dict[str, Any]:
    """A weight-less timm pretrained cfg describing the official CIFAR input convention."""
    return {
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR_MEAN,
        "std": CIFAR_STD,
        "first_conv": first_conv,
        "classifier": classifier,
        **overrides,
    }


def build_cifar_model(
    model_cls: type[ModelT], variant: str, pretrained: bool, **kwargs: Any
) -> ModelT:
    """Build through timm (it attaches ``pretrained_cfg``); there are no hub weights to load."""
    if pretrained:
        raise ConfigError(
            f"model {variant!r} has no pretrained weights; build it with pretrained=False and "
            "load a checkpoint instead"
        )
    return build_model_with_cfg(model_cls, variant, pretrained=False, **kwargs)


def he_init_(model: nn.Module, *, linear_weight: bool = False) -> None:
    """The official init: conv N(0, sqrt(2 / (k*k*out_ch))), BN weight 1 bias 0, FC bias 0.

    ``linear_weight`` also draws the FC weight from He-normal (fan in), as ResNeXt's code does;
    the other families keep PyTorch's default FC weight init.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_weight:
                nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)


class CifarNet(nn.Module):
    """Base class: timm's classifier API (``get_classifier``, ``reset_classifier``, ...).

    Subclasses build their layers, set ``num_features``, call :meth:`reset_classifier` and define
    ``forward_features``; ``classifier_name`` is the official name of the final linear layer.
    Global average pooling equals the official ``avg_pool2d(8)`` on the 8x8 maps of 32x32 inputs.
    ``head_drop`` is dropout before that layer (timm's meaning of ``drop_rate``) for the families
    whose official code has no dropout of its own; it holds no parameters, so state dicts match.
    """

    classifier_name = "fc"
    num_features: int

    def __init__(self, *, num_classes: int, in_chans: int, head_drop_rate: float = 0.0) -> None:
        super().__init__()
        if in_chans != 3:
            raise ConfigError(
                f"CIFAR models take 3-channel (RGB) input, got in_chans={in_chans}; "
                "remove in_chans from the model options"
            )
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool: nn.Module = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(head_drop_rate)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh linear head (``num_classes=0``: no head, the model returns pooled features)."""
        if global_pool not in (None, "avg"):
            raise ValueError(
                f"CIFAR models only pool by averaging, got global_pool={global_pool!r}"
            )
        self.num_classes = num_classes
        head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        setattr(self, self.classifier_name, head)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(torch.flatten(self.global_pool(x), 1))
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
