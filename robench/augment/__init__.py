"""Augmentation plugins, found by name in :data:`AUGMENTATIONS`."""

from robench.augment import augmix, baseline, cutmix, ipmix, pixmix  # noqa: F401  (registers them)
from robench.augment.base import AUGMENTATIONS, Augmentation, create_augmentation

__all__ = ["AUGMENTATIONS", "Augmentation", "create_augmentation"]
