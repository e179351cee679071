"""The standard CIFAR base transform: horizontal flip (p = 0.5) and a random crop with zero padding.

Every method (baseline, CutMix, AugMix, PixMix, IPMix) starts from it. Two forms with the same
distribution: per image (numpy, DataLoader workers) and per batch (torch, on the training device).
"""

from __future__ import annotations

import numpy as np
import torch


def flip_crop(image: np.ndarray, rng: np.random.Generator, padding: int = 4) -> np.ndarray:
    """uint8 (H, W, C): flip left-right with p = 0.5, then crop H x W from the zero-padded image."""
    h, w = image.shape[:2]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if padding <= 0:
        return np.ascontiguousarray(image)
    top, left = rng.integers(0, 2 * padding + 1, size=2)
    padded = np.zeros((h + 2 * padding, w + 2 * padding, image.shape[2]), dtype=image.dtype)
    padded[padding : padding + h, padding : padding + w] = image
    return np.ascontiguousarray(padded[top : top + h, left : left + w])


def flip_crop_batch(x: torch.Tensor, rng: np.random.Generator, padding: int = 4) -> torch.Tensor:
    """(B, C, H, W): an independent flip and crop for each image, in one gather on x's device."""
    b, _, h, w = x.shape
    flips = torch.from_numpy(rng.random(b) < 0.5).to(x.device)
    offsets = torch.from_numpy(rng.integers(0, 2 * padding + 1, size=(b, 2))).to(x.device)
    x = torch.where(flips[:, None, None, None], x.flip(3), x)
    if padding <= 0:
        return x
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    rows = (offsets[:, 0, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (offsets[:, 1, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]
