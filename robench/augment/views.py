"""The skeleton shared by AugMix, PixMix and IPMix, per sample and per batch.

All three start from the standard flip + crop, optionally draw one mixing picture per sample
(shared by its views), and return either one augmented view or, for the JSD consistency loss,
``(clean, augmented, augmented)``. A subclass supplies :meth:`MixViews.view` (one uint8 image,
numpy + PIL: the reference path, in DataLoader workers) and :meth:`MixViews.batch_views` (a
uint8 batch on the training device, tensor ops from :mod:`robench.augment.tensor_ops`: the fast
path). The ``path`` option picks which one the trainer runs.

The two paths are equivalent in distribution, not draw for draw: both make every random choice
per image from the same distributions, and the tensor ops reproduce PIL's pixels (exactly on
CIFAR images, see the table in ``tensor_ops``), so the same seed gives different but equally
distributed views (``tests/augment/test_batched_equivalence.py`` compares their statistics).

Default path: ``"batch"`` for all three, where it is equivalent in distribution and faster
(BENCHMARKS.md). Either path can be chosen with ``path = ...``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robench.augment.base import Augmentation, to_float_chw
from robench.augment.crop_flip import flip_crop, flip_crop_batch
from robench.augment.jsd import jsd_consistency
from robench.augment.tensor_ops import crops, to_float, to_uint8, upload
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
        path: str,
        mixing_set: str | None = None,
        mixing_count: int = 1000,
    ) -> None:
        super().__init__(num_classes, image_size)
        if padding < 0 or jsd_weight < 0:
            raise ConfigError(f"need padding >= 0 and jsd_weight >= 0, got {padding}, {jsd_weight}")
        self.jsd = bool(jsd)
        self.jsd_weight = float(jsd_weight)
        self.padding = padding
        self.choose_path(path)
        self.num_views = 3 if self.jsd else 1
        self.mixing_options = (
            {} if mixing_set is None else {"mixing_set": mixing_set, "mixing_count": mixing_count}
        )
        # loaded here, not lazily, so DataLoader workers inherit it instead of each loading it
        self.mixing: MixingSet | None = (
            None if mixing_set is None else load_mixing_set(mixing_set, mixing_count, image_size)
        )
        self._device_pictures: torch.Tensor | None = None  # the mixing set on the batch device

    # -- per sample (reference) ------------------------------------------------------------------

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

    # -- per batch (fast path) -------------------------------------------------------------------

    def batch_views(
        self, x: torch.Tensor, mixing: torch.Tensor | None, rng: np.random.Generator
    ) -> torch.Tensor:
        """uint8 (n, 3, H, W) after flip + crop, with each image's mixing picture -> one
        augmented view per image, float32 (n, 3, H, W) in [0, 1]."""
        raise NotImplementedError

    def batch(
        self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw images (B, 3, H, W) in [0, 1] (uint8 / 255) -> views stacked view-major.

        The augmented views of a JSD triple are made in one ``batch_views`` call on the batch
        repeated twice (view-major), sharing each image's crop and mixing picture as the
        per-sample path does.
        """
        x = flip_crop_batch(to_uint8(x), rng, self.padding)
        mixing = None if self.mixing is None else self.mixing_pictures(len(x), rng, x.device)
        copies = 2 if self.jsd else 1
        views = self.batch_views(
            x.repeat(copies, 1, 1, 1),
            None if mixing is None else mixing.repeat(copies, 1, 1, 1),
            rng,
        )
        return (torch.cat([to_float(x), views]) if self.jsd else views), y

    def mixing_pictures(
        self, n: int, rng: np.random.Generator, device: torch.device
    ) -> torch.Tensor:
        """``MixingSet.sample`` for n images at once: uint8 (n, 3, crop, crop) on ``device``,
        a uniformly drawn picture and a uniform crop position each (same draws, vectorised)."""
        assert self.mixing is not None
        pictures = self._device_pictures
        if pictures is None or pictures.device != device:
            chw = np.ascontiguousarray(self.mixing.images.transpose(0, 3, 1, 2))
            pictures = self._device_pictures = torch.from_numpy(chw).to(device)
        i = rng.integers(len(self.mixing), size=n)
        crop = self.mixing.crop
        h, w = self.mixing.sizes[i].T
        top, left = (rng.integers(s - crop + 1) for s in (h, w))
        i, top, left = upload([i, top, left], device)
        return crops(pictures, i, top, left, (crop, crop))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (DataLoader workers, checks) without the device copy of the mixing set."""
        return self.__dict__ | {"_device_pictures": None}

    # -- shared ------------------------------------------------------------------------------------

    def extra_loss(self, logits: list[torch.Tensor]) -> torch.Tensor | None:
        return self.jsd_weight * jsd_consistency(logits) if self.jsd else None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num_views": self.num_views, "jsd": self.jsd}
        if self.jsd:
            out["jsd_weight"] = self.jsd_weight
        out["padding"] = self.padding
        out["path"] = self.path
        if self.mixing is not None:
            out |= self.mixing_options | {"mixing_source": self.mixing.source}
        return out
