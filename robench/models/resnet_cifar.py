"""ResNet-18 for CIFAR as in the IPMix code.

3x3 stride-1 stem without max-pool, BasicBlock stages [2, 2, 2, 2] of 64-512 channels, global
average pool, FC; PyTorch's default init (the IPMix code sets none). timm's ``resnet18`` has an
ImageNet stem (7x7 stride 2 + max-pool) and is a different network on 32x32 images.

IPMix's factory ignores ``num_classes`` and always builds a 100-way head, so its released
CIFAR-10 ResNet-18 has 100 logits; ``legacy_100_head=True`` reproduces that to load it.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from robench.models.base import CifarNet, build_cifar_model, cifar_cfg


class BasicBlock(nn.Module):
    """Post-activation basic block with a 1x1 projection when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.residual_function = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.residual_function(x) + self.shortcut(x))


class CifarResNet(CifarNet):
    """ResNet with BasicBlocks and a CIFAR stem; ``drop_rate`` is dropout before the FC."""

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        legacy_100_head: bool = False,
    ) -> None:
        if legacy_100_head:
            num_classes = 100
        super().__init__(num_classes=num_classes, in_chans=in_chans, head_drop_rate=drop_rate)
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_chans, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        channels = 64
        stages = []
        for width, blocks, stride in zip((64, 128, 256, 512), layers, (1, 2, 2, 2), strict=True):
            stage = []
            for i in range(blocks):
                stage.append(BasicBlock(channels, width, stride if i == 0 else 1))
                channels = width
            stages.append(nn.Sequential(*stage))
        self.conv2_x, self.conv3_x, self.conv4_x, self.conv5_x = stages
        self.num_features = channels
        self.reset_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3_x(self.conv2_x(self.conv1(x)))
        return self.conv5_x(self.conv4_x(x))


default_cfgs = generate_default_cfgs(
    {"resnet18_cifar": cifar_cfg(first_conv="conv1.0", classifier="fc")}
)


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-18 with a CIFAR stem (11.2 M parameters at 10 classes), IPMix's ResNet-18.

    ``legacy_100_head=True`` builds IPMix's always-100-logits head (``model.num_classes`` is then
    100 whatever ``num_classes`` says), needed to load IPMix's released CIFAR-10 checkpoint.
    """
    return build_cifar_model(
        CifarResNet, "resnet18_cifar", pretrained, layers=(2, 2, 2, 2), **kwargs
    )
