"""Wide ResNets (Zagoruyko & Komodakis) as in the AugMix/PixMix/IPMix code.

3x3 conv to 16 channels, three groups of (depth - 4) / 6 pre-activation basic blocks of widths
16k, 32k, 64k (strides 1, 2, 2), BN-ReLU, global average pool, FC. ``drop_rate`` is the dropout
between a block's two convs (AugMix 0.0; PixMix/IPMix recipes 0.3), set by the recipe.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from robench.models.base import CifarNet, build_cifar_model, cifar_cfg, he_init_


class BasicBlock(nn.Module):
    """Pre-activation block; a projecting shortcut shares the block's first BN-ReLU (official)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(drop_rate)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.convShortcut: nn.Module | None = None
        if in_planes != out_planes or stride != 1:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.drop(self.relu2(self.bn2(self.conv1(act)))))
        shortcut = x if self.convShortcut is None else self.convShortcut(act)
        return shortcut + out


class NetworkBlock(nn.Module):
    """One group of blocks; the wrapper exists to keep the official ``blockN.layer.i`` names."""

    def __init__(
        self, n: int, in_planes: int, out_planes: int, stride: int, drop_rate: float
    ) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(
                BasicBlock(
                    in_planes if i == 0 else out_planes,
                    out_planes,
                    stride if i == 0 else 1,
                    drop_rate,
                )
                for i in range(n)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(CifarNet):
    """WRN-depth-k for 32x32 inputs."""

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.drop_rate = drop_rate
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.num_features = widths[3]
        self.reset_classifier(num_classes)
        he_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.relu(self.bn1(x))


default_cfgs = generate_default_cfgs(
    {
        name: cifar_cfg(first_conv="conv1", classifier="fc")
        for name in ("wrn_16_2", "wrn_40_2", "wrn_40_4", "wrn_28_10")
    }
)


def _create(
    variant: str, depth: int, widen_factor: int, pretrained: bool, **kwargs: Any
) -> WideResNet:
    return build_cifar_model(
        WideResNet, variant, pretrained, depth=depth, widen_factor=widen_factor, **kwargs
    )


@register_model
def wrn_16_2(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-16-2 (0.69 M parameters): the fast network for CPU runs and tests."""
    return _create("wrn_16_2", 16, 2, pretrained, **kwargs)


@register_model
def wrn_40_2(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-40-2 (2.2 M): the AugMix paper's main CIFAR network."""
    return _create("wrn_40_2", 40, 2, pretrained, **kwargs)


@register_model
def wrn_40_4(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-40-4 (8.9 M): PixMix's and IPMix's main CIFAR network (their recipes use dropout 0.3)."""
    return _create("wrn_40_4", 40, 4, pretrained, **kwargs)


@register_model
def wrn_28_10(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-28-10 (36.5 M): IPMix's large CIFAR network."""
    return _create("wrn_28_10", 28, 10, pretrained, **kwargs)
