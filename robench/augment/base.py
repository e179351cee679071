"""The augmentation plugin protocol.

A plugin turns training images into what the model sees, through up to two paths:

* ``sample(image, rng)``: one uint8 HWC image -> float32 views ``(V, 3, H, W)`` in [0, 1]. Runs in
  DataLoader workers (the reference path of the published per-image algorithms).
* ``batch(x, y, rng)``: on the training device, a float batch in [0, 1] and int labels ``(B,)``
  -> the batch the model sees, ``(V*B, 3, H, W)`` with views stacked view-major
  (``[view0 of all B | view1 of all B | ...]``), and targets: int labels or soft targets ``(B, C)``
  (CutMix, Mixup, and the batched fast paths). ``x`` is what the sample stage made (stacked the
  same way), or the raw images ``(B, 3, H, W)`` when the plugin has no sample stage.

``num_views`` says how many views the model sees per image (3 for JSD: clean + 2 augmented).
The trainer's loss is cross-entropy on view 0 against the targets, plus ``extra_loss`` on the
logits of all views (the JSD consistency term), so a plugin never touches the trainer.

Randomness: every draw comes from the ``numpy.random.Generator`` passed in, which the trainer
derives from (seed, epoch, sample index) or (seed, epoch, step); a plugin must not use global RNGs,
so the same seed gives the same views whatever the number of workers, and resumed runs repeat
exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robench.errors import ConfigError
from robench.registry import Registry


class Augmentation:
    """Base class for augmentation plugins. Override ``sample`` and/or ``batch``."""

    #: views per image handed to the model (stacked view-major along the batch)
    num_views: int = 1

    def __init__(self, num_classes: int, image_size: int = 32, **options: Any) -> None:
        if options:
            raise TypeError(f"unexpected options: {', '.join(sorted(options))}")
        self.num_classes = num_classes
        self.image_size = image_size

    #: for a plugin with both paths, the one the trainer runs ("sample" or "batch"), set through
    #: :meth:`choose_path`; None: whichever of ``sample`` / ``batch`` the plugin overrides
    path: str | None = None

    @property
    def has_sample(self) -> bool:
        if self.path is not None:
            return self.path == "sample"
        return type(self).sample is not Augmentation.sample

    @property
    def has_batch(self) -> bool:
        if self.path is not None:
            return self.path == "batch"
        return type(self).batch is not Augmentation.batch

    def choose_path(self, path: str) -> None:
        """Pick the per-sample (reference) or the batched path of a plugin that has both."""
        if path not in PATHS:
            raise ConfigError(f"augment path must be 'sample' or 'batch', got {path!r}")
        self.path = path

    def sample(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 (H, W, 3) -> float32 (num_views, 3, H, W) in [0, 1]. Default: no change."""
        return to_float_chw(image)[None]

    def batch(
        self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float batch, int (B,) -> (num_views*B, 3, H, W) and int or soft (B, C) targets."""
        return x, y

    def extra_loss(self, logits: list[torch.Tensor]) -> torch.Tensor | None:
        """An added loss term on the logits of each view (e.g. JSD); None for plain CE."""
        return None

    def describe(self) -> dict[str, Any]:
        """The resolved options, recorded with every result."""
        return {"num_views": self.num_views}


AUGMENTATIONS: Registry[type[Augmentation]] = Registry("augmentation")
PATHS = ("sample", "batch")


def to_float_chw(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1] (what ``ToTensor`` does)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255.0


def create_augmentation(
    name: str, *, num_classes: int, image_size: int = 32, **options: Any
) -> Augmentation:
    """Build a registered augmentation by name; unknown options are a config error."""
    factory = AUGMENTATIONS.get(name)
    try:
        return factory(num_classes=num_classes, image_size=image_size, **options)
    except TypeError as err:
        raise ConfigError(f"augment options for {name!r}: {err}") from None
