"""``baseline``: the standard crop + flip recipe ("Vanilla" / "Standard" in the papers)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robench.augment.base import AUGMENTATIONS, Augmentation, to_float_chw
from robench.augment.crop_flip import flip_crop, flip_crop_batch
from robench.errors import ConfigError


@AUGMENTATIONS.register("baseline", description="random crop (4 px zero padding) + horizontal flip")
class Baseline(Augmentation):
    """Flip + 4-pixel zero-padded random crop; ``path`` picks per-sample (workers) or per-batch."""

    def __init__(
        self, num_classes: int, image_size: int = 32, padding: int = 4, path: str = "batch"
    ) -> None:
        super().__init__(num_classes, image_size)
        if padding < 0:
            raise ConfigError(f"augment.padding must be >= 0, got {padding}")
        self.padding = padding
        self.choose_path(path)

    def sample(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return to_float_chw(flip_crop(image, rng, self.padding))[None]

    def batch(
        self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return flip_crop_batch(x, rng, self.padding), y

    def describe(self) -> dict[str, Any]:
        return {"num_views": 1, "padding": self.padding, "path": self.path}
