"""DenseNets for CIFAR (Huang et al.), in the layout of the AugMix/PixMix/IPMix code.

Two variants, because paper and code disagree (``google-research/augmix``
``third_party/ResNeXt_DenseNet/models/densenet.py``): the AugMix paper names DenseNet-BC
(k=12, depth 100), while the ``densenet()`` factory of the AugMix/PixMix/IPMix code builds
DenseNet-40-12 without bottleneck layers or compression. ``densenet_40_12`` is what the published
code trained; ``densenet_bc_100`` is what the paper describes.

3x3 stem to 2k channels, three dense blocks joined by BN-ReLU-1x1 conv-avgpool transitions,
BN-ReLU, global average pool, FC.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from robench.models.base import CifarNet, build_cifar_model, cifar_cfg, he_init_


class SingleLayer(nn.Module):
    """BN-ReLU-3x3 conv adding ``growth_rate`` channels (no bottleneck)."""

    def __init__(self, channels: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, growth_rate, 3, padding=1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv1(self.relu(self.bn1(x)))), 1)


class Bottleneck(nn.Module):
    """BN-ReLU-1x1 conv to 4k channels, BN-ReLU-3x3 conv adding ``growth_rate`` channels."""

    def __init__(self, channels: int, growth_rate: int) -> None:
        super().__init__()
        inter = 4 * growth_rate
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, inter, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inter)
        self.conv2 = nn.Conv2d(inter, growth_rate, 3, padding=1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        return torch.cat((x, self.conv2(self.relu(self.bn2(out)))), 1)


class Transition(nn.Module):
    """BN-ReLU-1x1 conv (compression) then 2x2 average pool."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv1(self.relu(self.bn1(x))))


class CifarDenseNet(CifarNet):
    """DenseNet for 32x32 inputs; ``drop_rate`` is dropout before the FC."""

    def __init__(
        self,
        growth_rate: int,
        depth: int,
        reduction: float,
        bottleneck: bool,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, head_drop_rate=drop_rate)
        layers_per_block = (depth - 4) // (6 if bottleneck else 3)
        layer_cls = Bottleneck if bottleneck else SingleLayer
        channels = 2 * growth_rate
        self.conv1 = nn.Conv2d(in_chans, channels, 3, padding=1, bias=False)
        for b in (1, 2, 3):
            block = []
            for _ in range(layers_per_block):
                block.append(layer_cls(channels, growth_rate))
                channels += growth_rate
            self.add_module(f"dense{b}", nn.Sequential(*block))
            if b < 3:
                out_channels = math.floor(channels * reduction)
                self.add_module(f"trans{b}", Transition(channels, out_channels))
                channels = out_channels
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.num_features = channels
        self.reset_classifier(num_classes)
        he_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trans1(self.dense1(self.conv1(x)))
        x = self.dense3(self.trans2(self.dense2(x)))
        return self.relu(self.bn1(x))


default_cfgs = generate_default_cfgs(
    {
        name: cifar_cfg(first_conv="conv1", classifier="fc")
        for name in ("densenet_40_12", "densenet_bc_100")
    }
)


@register_model
def densenet_40_12(pretrained: bool = False, **kwargs: Any) -> CifarDenseNet:
    """DenseNet-40 (k=12, no bottleneck, no compression; 1.06 M): the AugMix/IPMix code's net."""
    return build_cifar_model(
        CifarDenseNet,
        "densenet_40_12",
        pretrained,
        growth_rate=12,
        depth=40,
        reduction=1.0,
        bottleneck=False,
        **kwargs,
    )


@register_model
def densenet_bc_100(pretrained: bool = False, **kwargs: Any) -> CifarDenseNet:
    """DenseNet-BC-100 (k=12, bottleneck, compression 0.5; 0.77 M): the AugMix paper's net."""
    return build_cifar_model(
        CifarDenseNet,
        "densenet_bc_100",
        pretrained,
        growth_rate=12,
        depth=100,
        reduction=0.5,
        bottleneck=True,
        **kwargs,
    )
