"""``noisemix``: flip + crop, then a blend with a noisy copy of the image at a Beta-drawn weight.

Per sample: the noisy copy adds Gaussian noise (std ``sigma``) or uniform noise of the same std,
picked at random when ``noise = "both"``; the weight is ``Beta(alpha, alpha)``. With ``jsd`` the
model sees (clean, mixed, mixed) and the JSD consistency term joins the loss, as in AugMix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robench.augment.base import Augmentation, to_float_chw
from robench.augment.crop_flip import flip_crop
from robench.augment.jsd import jsd_consistency
from robench.errors import ConfigError

NOISES = ("gaussian", "uniform", "both")


class NoiseMix(Augmentation):
    """Flip + crop, then blend with a Gaussian/uniform-noise copy at a Beta(alpha, alpha) weight."""

    def __init__(
        self,
        num_classes: int,
        image_size: int = 32,
        sigma: float = 0.1,
        alpha: float = 1.0,
        noise: str = "both",
        jsd: bool = False,
        jsd_weight: float = 12.0,
        padding: int = 4,
    ) -> None:
        super().__init__(num_classes, image_size)
        if noise not in NOISES:
            raise ConfigError(f"noisemix noise must be one of {', '.join(NOISES)}, got {noise!r}")
        if sigma <= 0 or alpha <= 0 or jsd_weight < 0 or padding < 0:
            raise ConfigError(
                "noisemix needs sigma > 0, alpha > 0, jsd_weight >= 0, padding >= 0; got "
                f"sigma={sigma}, alpha={alpha}, jsd_weight={jsd_weight}, padding={padding}"
            )
        self.sigma, self.alpha, self.noise = float(sigma), float(alpha), noise
        self.jsd, self.jsd_weight, self.padding = bool(jsd), float(jsd_weight), padding
        self.num_views = 3 if self.jsd else 1

    def sample(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        clean = to_float_chw(flip_crop(image, rng, self.padding))
        if not self.jsd:
            return self.mix(clean, rng)[None]
        return np.stack([clean, self.mix(clean, rng), self.mix(clean, rng)])

    def mix(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """float32 (3, H, W) in [0, 1] -> its blend with a noisy copy, still in [0, 1]."""
        gaussian = self.noise == "gaussian" or (self.noise == "both" and rng.random() < 0.5)
        if gaussian:
            noise = rng.standard_normal(clean.shape, dtype=np.float32) * self.sigma
        else:  # uniform on [-a, a] has std a / sqrt(3)
            a = self.sigma * np.sqrt(3.0)
            noise = rng.uniform(-a, a, clean.shape).astype(np.float32)
        noisy = np.clip(clean + noise, 0.0, 1.0)
        weight = np.float32(rng.beta(self.alpha, self.alpha))
        return (1 - weight) * clean + weight * noisy

    def extra_loss(self, logits: list[torch.Tensor]) -> torch.Tensor | None:
        return self.jsd_weight * jsd_consistency(logits) if self.jsd else None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num_views": self.num_views, "sigma": self.sigma}
        out |= {"alpha": self.alpha, "noise": self.noise, "jsd": self.jsd}
        if self.jsd:
            out["jsd_weight"] = self.jsd_weight
        return out | {"padding": self.padding}
