"""Training: the loop and its schedule (loss terms come from the augmentation plugins)."""

from robench.training.trainer import Trainer, resolve_device, use_amp

__all__ = ["Trainer", "resolve_device", "use_amp"]
