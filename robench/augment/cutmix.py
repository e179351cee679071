"""``cutmix`` and ``mixup``: batch-level label mixing through ``timm.data.Mixup`` (docs/methods.md).

Both run in ``batch()`` on the training device: the standard flip + crop per image (the
per-sample part of the official recipes), then timm's Mixup in ``mode="batch"`` (one decision
and one lambda per batch, partner = the batch reversed, which equals a random permutation in
distribution because the loader shuffles), no label smoothing, soft targets ``(B, C)``.

timm draws from the *global* numpy RNG. To keep the plugin deterministic and free of global
side effects, each call seeds the global numpy state from the passed generator and restores
the previous state afterwards. timm requires an even batch: with an odd batch the last image
is left unmixed (one-hot target) and the rest is mixed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from timm.data import Mixup

from robench.augment.base import AUGMENTATIONS, Augmentation
from robench.augment.crop_flip import flip_crop_batch
from robench.errors import ConfigError


class TimmMix(Augmentation):
    """Flip + crop, then ``timm.data.Mixup`` (CutMix or Mixup) applied with per-batch ``prob``."""

    uses_cutmix: bool

    def __init__(
        self, num_classes: int, image_size: int, *, alpha: float, prob: float, padding: int
    ) -> None:
        super().__init__(num_classes, image_size)
        if alpha <= 0 or not 0 <= prob <= 1 or padding < 0:
            raise ConfigError(
                f"need alpha > 0, 0 <= prob <= 1, padding >= 0; got {alpha}, {prob}, {padding}"
            )
        self.alpha, self.prob, self.padding = alpha, prob, padding
        self.mixup = Mixup(
            mixup_alpha=0.0 if self.uses_cutmix else alpha,
            cutmix_alpha=alpha if self.uses_cutmix else 0.0,
            prob=prob,
            mode="batch",
            correct_lam=True,
            label_smoothing=0.0,
            num_classes=num_classes,
        )

    def batch(
        self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = flip_crop_batch(x, rng, self.padding)
        targets = torch.nn.functional.one_hot(y.long(), self.num_classes).float()
        even = len(y) - len(y) % 2
        if even:
            state = np.random.get_state()
            np.random.seed(int(rng.integers(2**32)))
            try:
                x[:even], targets[:even] = self.mixup(x[:even], y[:even])
            finally:
                np.random.set_state(state)
        return x, targets

    def describe(self) -> dict[str, Any]:
        return {"num_views": 1, "alpha": self.alpha, "prob": self.prob, "padding": self.padding}


@AUGMENTATIONS.register(
    "cutmix", description="CutMix (alpha 1, p = 0.5 per batch, area-corrected lambda)"
)
class CutMix(TimmMix):
    """CutMix as the IPMix paper's baseline: alpha 1, applied to a batch with p = 0.5 (the
    official CIFAR ``cutmix_prob``), lambda recomputed from the clipped box."""

    uses_cutmix = True

    def __init__(
        self,
        num_classes: int,
        image_size: int = 32,
        alpha: float = 1.0,
        prob: float = 0.5,
        padding: int = 4,
    ) -> None:
        super().__init__(num_classes, image_size, alpha=alpha, prob=prob, padding=padding)


@AUGMENTATIONS.register("mixup", description="Mixup (alpha 1, every batch)")
class MixupAug(TimmMix):
    """Mixup: ``lam x + (1 - lam) x_partner`` with lam ~ Beta(alpha, alpha) on every batch."""

    uses_cutmix = False

    def __init__(
        self,
        num_classes: int,
        image_size: int = 32,
        alpha: float = 1.0,
        prob: float = 1.0,
        padding: int = 4,
    ) -> None:
        super().__init__(num_classes, image_size, alpha=alpha, prob=prob, padding=padding)
