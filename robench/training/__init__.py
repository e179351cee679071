"""Training: the loop and its schedule (loss terms come from the augmentation plugins)."""

from robench.training.trainer import Trainer

__all__ = ["Trainer"]
