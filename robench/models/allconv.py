"""AllConvNet (Springenberg et al.) as in the AugMix code, with BN and GELU after every conv.

conv3x3 96 x3 -> max-pool 2 + dropout -> conv3x3 192 x3 -> max-pool 2 + dropout -> conv3x3 192
(no padding) -> conv1x1 192 (padding 1) x2 -> 8x8 average pool -> FC.

Two quirks of the official code are kept because released weights depend on them: the GELU is the
sigmoid approximation ``x * sigmoid(1.702 x)``, and the padded 1x1 convs grow the last map to
10x10, so the final ``AvgPool2d(8)`` averages its top-left 8x8 window, not the whole map (the net
therefore needs 32x32 inputs). ``drop_rate`` is the dropout after each max-pool, 0.5 in the code.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from robench.models.base import CifarNet, build_cifar_model, cifar_cfg, he_init_


class SigmoidGELU(nn.Module):
    """The AugMix code's GELU approximation, ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(1.702 * x) * x


def _conv_bn_gelu(in_ch: int, out_ch: int, kernel: int, padding: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel, padding=padding),
        nn.BatchNorm2d(out_ch),
        SigmoidGELU(),
    ]


class AllConvNet(CifarNet):
    """The AugMix AllConvNet for 32x32 inputs (layer order and names as in the code)."""

    classifier_name = "classifier"

    def __init__(self, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.5) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        w1, w2 = 96, 192
        self.drop_rate = drop_rate
        self.features = nn.Sequential(
            *_conv_bn_gelu(in_chans, w1, 3, 1),
            *_conv_bn_gelu(w1, w1, 3, 1),
            *_conv_bn_gelu(w1, w1, 3, 1),
            nn.MaxPool2d(2, 2),
            nn.Dropout(drop_rate),
            *_conv_bn_gelu(w1, w2, 3, 1),
            *_conv_bn_gelu(w2, w2, 3, 1),
            *_conv_bn_gelu(w2, w2, 3, 1),
            nn.MaxPool2d(2, 2),
            nn.Dropout(drop_rate),
            *_conv_bn_gelu(w2, w2, 3, 0),
            *_conv_bn_gelu(w2, w2, 1, 1),
            *_conv_bn_gelu(w2, w2, 1, 1),
        )
        self.global_pool = nn.AvgPool2d(8)
        self.num_features = w2
        self.reset_classifier(num_classes)
        he_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


default_cfgs = generate_default_cfgs(
    {"allconv": cifar_cfg(first_conv="features.0", classifier="classifier")}
)


@register_model
def allconv(pretrained: bool = False, **kwargs: Any) -> AllConvNet:
    """AugMix's AllConvNet (1.4 M parameters at 10 classes)."""
    return build_cifar_model(AllConvNet, "allconv", pretrained, **kwargs)
