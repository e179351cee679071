"""Training: the loop, its schedule and its losses."""

from robench.train.trainer import Trainer, resolve_device, use_amp

__all__ = ["Trainer", "resolve_device", "use_amp"]
