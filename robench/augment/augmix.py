"""``augmix``: AugMix as in the official PyTorch ``cifar.py`` (``google-research/augmix``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robench.augment.base import AUGMENTATIONS
from robench.augment.mixing_ops import augment_and_mix
from robench.augment.ops import AUGMIX_ALL_OPS, AUGMIX_OPS, random_op
from robench.augment.tensor_ops import mix_chains, random_ops_
from robench.augment.views import MixViews
from robench.errors import ConfigError


def chain_depths(depth: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """Ops in n chains: ``depth`` if positive, else uniform on {1, 2, 3} (official ``-1``)."""
    return np.full(n, depth) if depth > 0 else rng.integers(1, 4, size=n)


def chain_depth(depth: int, rng: np.random.Generator) -> int:
    """One chain's depth (the per-sample path)."""
    return int(chain_depths(depth, rng, 1)[0])


@AUGMENTATIONS.register(
    "augmix", description="AugMix: 3 chains of 1-3 PIL ops, Dirichlet/Beta mixed, JSD loss"
)
class AugMix(MixViews):
    """AugMix: ``width`` chains of ``depth`` PIL ops mixed with Dirichlet weights, then blended
    with the clean image with a Beta weight.

    Defaults are the official code's: width 3, depth -1 (1-3), severity 3, alpha 1, the 9 ops
    that do not overlap ImageNet-C (``all_ops=True`` adds color/contrast/brightness/sharpness),
    JSD on (3 views, weight 12). The mix happens in float without uint8 round-trips between
    chains, as the PyTorch ``cifar.py`` that produced the released models does. ``path``:
    ``"batch"`` (default: tensor ops on the training device, equivalent in distribution and
    faster) or ``"sample"`` (the PIL reference, in DataLoader workers); see
    :mod:`robench.augment.views`.
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int = 32,
        width: int = 3,
        depth: int = -1,
        severity: float = 3,
        alpha: float = 1.0,
        all_ops: bool = False,
        jsd: bool = True,
        jsd_weight: float = 12.0,
        padding: int = 4,
        path: str = "batch",
    ) -> None:
        super().__init__(
            num_classes, image_size, jsd=jsd, jsd_weight=jsd_weight, padding=padding, path=path
        )
        if width < 1 or depth == 0 or not 0 < severity <= 10 or alpha <= 0:
            raise ConfigError(
                "augmix needs width >= 1, depth > 0 or -1, 0 < severity <= 10, alpha > 0; "
                f"got width={width}, depth={depth}, severity={severity}, alpha={alpha}"
            )
        self.width, self.depth, self.severity, self.alpha = width, depth, severity, alpha
        self.all_ops = bool(all_ops)
        self.ops = AUGMIX_ALL_OPS if self.all_ops else AUGMIX_OPS

    def chain(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for _ in range(chain_depth(self.depth, rng)):
            x = random_op(x, self.ops, self.severity, rng)
        return x

    def view(
        self, x: np.ndarray, mixing: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray:
        return augment_and_mix(x, self.chain, self.width, self.alpha, rng)

    def batch_views(
        self, x: torch.Tensor, mixing: torch.Tensor | None, rng: np.random.Generator
    ) -> torch.Tensor:
        """All ``width`` chains of all images at once (chain-major); step s applies one random
        op to the chains deeper than s."""
        chains = x.repeat(self.width, 1, 1, 1)
        depths = chain_depths(self.depth, rng, len(chains))
        for step in range(depths.max()):
            random_ops_(chains, np.flatnonzero(depths > step), self.ops, self.severity, rng)
        return mix_chains(x, chains.view(self.width, *x.shape), self.alpha, rng)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "width": self.width,
            "depth": self.depth,
            "severity": self.severity,
            "alpha": self.alpha,
            "all_ops": self.all_ops,
        }
