"""``pixmix``: PixMix as in the official ``cifar.py`` (spec methods.md §3)."""

from __future__ import annotations

from typing import Any

import numpy as np

from robench.augment.base import AUGMENTATIONS, to_float_chw
from robench.augment.mixing_ops import PIXMIX_MIXINGS
from robench.augment.ops import AUGMIX_ALL_OPS, AUGMIX_OPS, random_op
from robench.augment.views import MixViews
from robench.errors import ConfigError


@AUGMENTATIONS.register(
    "pixmix", description="PixMix: 0-4 rounds of add/multiply with fractals or augmented copies"
)
class PixMix(MixViews):
    """PixMix: start from x or one op of x, then 0..k rounds each mixing in (p = 1/2) the mixing
    picture or a freshly augmented copy of the original, by ``add`` or ``multiply``, clamped to
    [0, 1] after every round.

    Defaults follow the code (``cifar.py``): k = 4, beta = 3, severity 3, the 9 AugMix ops
    (``all_ops=False``; the README's recipes pass ``--all-ops``, set ``all_ops=True`` for them),
    no JSD (``jsd=True`` gives AugMix-style clean + 2 views, not in the PixMix code). The IPMix
    paper's PixMix baseline used k = 3, beta = 4.
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int = 32,
        k: int = 4,
        beta: float = 3,
        severity: float = 3,
        all_ops: bool = False,
        mixing_set: str = "fractals",
        mixing_count: int = 1000,
        jsd: bool = False,
        jsd_weight: float = 12.0,
        padding: int = 4,
    ) -> None:
        if k < 0 or beta <= 0 or not 0 < severity <= 10:
            raise ConfigError(
                f"pixmix needs k >= 0, beta > 0, 0 < severity <= 10; got {k}, {beta}, {severity}"
            )
        super().__init__(
            num_classes,
            image_size,
            jsd=jsd,
            jsd_weight=jsd_weight,
            padding=padding,
            mixing_set=mixing_set,
            mixing_count=mixing_count,
        )
        self.k, self.beta, self.severity = k, beta, severity
        self.all_ops = bool(all_ops)
        self.ops = AUGMIX_ALL_OPS if self.all_ops else AUGMIX_OPS

    def view(
        self, x: np.ndarray, mixing: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray:
        def augmented_or(fallback: np.ndarray) -> np.ndarray:
            pick = random_op(x, self.ops, self.severity, rng) if rng.random() < 0.5 else fallback
            return to_float_chw(pick)

        mixed = augmented_or(x)
        for _ in range(rng.integers(self.k + 1)):
            other = augmented_or(mixing)
            op = PIXMIX_MIXINGS[rng.integers(len(PIXMIX_MIXINGS))]
            mixed = np.clip(op(mixed, other, self.beta, rng), 0, 1)
        return mixed

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "k": self.k,
            "beta": self.beta,
            "severity": self.severity,
            "all_ops": self.all_ops,
        }
