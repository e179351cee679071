"""The per-sample skeleton shared by AugMix, PixMix and IPMix.

All three start from the standard flip + crop, optionally draw one mixing picture per sample
(shared by its views), and return either one augmented view or, for the JSD consistency loss,
``(clean, augmented, augmented)``. A subclass only supplies :meth:`MixViews.view`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robench.augment.base import Augmentation, to_float_chw
from robench.augment.crop_flip import flip_crop
from robench.augment.jsd import jsd_consistency
from robench.data.mixing import MixingSet, load_mixing_set
from robench.errors import ConfigError


class MixViews(Augmentation):
    """Flip + crop, then ``view(x, mixing_picture, rng)`` once, or clean + twice with JSD."""

    def __init__(
        self,
        num_classes: int,
        image_size: int,
        *,
        jsd: bool,
        jsd_weight: float,
        padding: int,
        mixing_set: str | None = None,
        mixing_count: int = 1000,
    ) -> None:
        super().__init__(num_classes, image_size)
        if padding < 0 or jsd_weight < 0:
            raise ConfigError(f"need padding >= 0 and jsd_weight >= 0, got {padding}, {jsd_weight}")
        self.jsd = bool(jsd)
        self.jsd_weight = float(jsd_weight)
        self.padding = padding
        self.num_views = 3 if self.jsd else 1
        self.mixing_options = (
            {} if mixing_set is None else {"mixing_set": mixing_set, "mixing_count": mixing_count}
        )
        # loaded here, not lazily, so DataLoader workers inherit it instead of each loading it
        self.mixing: MixingSet | None = (
            None if mixing_set is None else load_mixing_set(mixing_set, mixing_count, image_size)
        )

    def view(
        self, x: np.ndarray, mixing: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray:
        """uint8 (H, W, 3) after flip + crop -> one augmented float32 (3, H, W) in [0, 1]."""
        raise NotImplementedError

    def sample(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = flip_crop(image, rng, self.padding)
        mixing = None if self.mixing is None else self.mixing.sample(rng)
        if not self.jsd:
            return self.view(x, mixing, rng)[None]
        return np.stack([to_float_chw(x), self.view(x, mixing, rng), self.view(x, mixing, rng)])

    def extra_loss(self, logits: list[torch.Tensor]) -> torch.Tensor | None:
        return self.jsd_weight * jsd_consistency(logits) if self.jsd else None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num_views": self.num_views, "jsd": self.jsd}
        if self.jsd:
            out["jsd_weight"] = self.jsd_weight
        out["padding"] = self.padding
        if self.mixing is not None:
            out |= self.mixing_options | {"mixing_source": self.mixing.source}
        return out
