"""Which device and precision a run or an evaluation uses: shared by training and evaluation."""

from __future__ import annotations

import torch

from robench.errors import ConfigError, RobenchError


def resolve_device(name: str) -> torch.device:
    """``auto`` (the GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"device {name!r} is not one robench runs on; use auto, cpu, cuda or cuda:N"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RobenchError(f"device {name!r} asked for, but CUDA is not available; use cpu or auto")
    return device


def use_amp(setting: str, device: torch.device) -> bool:
    """bf16 autocast: on by default on CUDA, optional on the CPU."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")
