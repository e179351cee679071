"""ResNeXt-29 for CIFAR as in the AugMix code (``resnext29(cardinality=4, base_width=32)``).

64-channel 3x3 stem, three stages of three type-C bottleneck blocks (planes 64/128/256, expansion 4,
so 1024 output channels), global average pool, FC. The AugMix paper and RobustBench call it
"ResNeXt-29 (32x4d)", but the code's constructor builds 4 groups of width 32 per 64 planes
(``third_party/ResNeXt_DenseNet/models/resnext.py``); the registered name keeps the published
label, the network is the code's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from robench.models.base import CifarNet, build_cifar_model, cifar_cfg, he_init_


class ResNeXtBottleneck(nn.Module):
    """1x1 reduce -> grouped 3x3 -> 1x1 expand (x4), post-activation, projection when needed."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, cardinality: int, base_width: int, stride: int
    ) -> None:
        super().__init__()
        width = math.floor(planes * base_width / 64) * cardinality
        out = planes * self.expansion
        self.conv_reduce = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn_reduce = nn.BatchNorm2d(width)
        self.conv_conv = nn.Conv2d(
            width, width, 3, stride=stride, padding=1, groups=cardinality, bias=False
        )
        self.bn = nn.BatchNorm2d(width)
        self.conv_expand = nn.Conv2d(width, out, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(out)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn_reduce(self.conv_reduce(x)))
        y = self.relu(self.bn(self.conv_conv(y)))
        y = self.bn_expand(self.conv_expand(y))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(residual + y)


class CifarResNeXt(CifarNet):
    """ResNeXt of depth 9n + 2 for 32x32 inputs; ``drop_rate`` is dropout before the FC."""

    classifier_name = "classifier"

    def __init__(
        self,
        depth: int = 29,
        cardinality: int = 4,
        base_width: int = 32,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, head_drop_rate=drop_rate)
        if (depth - 2) % 9:
            raise ValueError(f"ResNeXt depth must be 9n + 2, got {depth}")
        n = (depth - 2) // 9
        self.conv_1_3x3 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
        self.bn_1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 64
        stages = []
        for planes, stride in ((64, 1), (128, 2), (256, 2)):
            blocks = []
            for i in range(n):
                blocks.append(
                    ResNeXtBottleneck(
                        inplanes, planes, cardinality, base_width, stride if i == 0 else 1
                    )
                )
                inplanes = planes * ResNeXtBottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.stage_1, self.stage_2, self.stage_3 = stages
        self.num_features = inplanes
        self.reset_classifier(num_classes)
        he_init_(self, linear_weight=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn_1(self.conv_1_3x3(x)))
        return self.stage_3(self.stage_2(self.stage_1(x)))


default_cfgs = generate_default_cfgs(
    {"resnext29_32x4d": cifar_cfg(first_conv="conv_1_3x3", classifier="classifier")}
)


@register_model
def resnext29_32x4d(pretrained: bool = False, **kwargs: Any) -> CifarResNeXt:
    """AugMix's ResNeXt-29: cardinality 4, base width 32 (6.8 M parameters at 10 classes)."""
    return build_cifar_model(
        CifarResNeXt, "resnext29_32x4d", pretrained, cardinality=4, base_width=32, **kwargs
    )
