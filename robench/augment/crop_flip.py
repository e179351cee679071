"""The standard CIFAR base transform: horizontal flip (p = 0.5) and a random crop with zero padding.

Every method (baseline, CutMix, AugMix, PixMix, IPMix) starts from it. Two forms with the same
distribution: per image (numpy, DataLoader workers) and per batch (torch, on the training device).
"""

from __future__ import annotations

import numpy as np
import torch

from robench.augment.tensor_ops import crops, upload


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
    """(B, C, H, W): an independent flip and crop for each image, as one index on x's device.

    A flipped image's crop is the crop of the flipped padded image, so each crop is taken from
    the padded batch or its mirror (:func:`~robench.augment.tensor_ops.crops`). The draws go in
    one non-blocking copy, so nothing here waits for the device."""
    b, _, h, w = x.shape
    flips = rng.random(b) < 0.5
    offsets = rng.integers(0, 2 * padding + 1, size=(b, 2))
    source, top, left = upload([np.arange(b) + b * flips, *offsets.T], x.device)
    padded = torch.nn.functional.pad(x, (padding,) * 4) if padding > 0 else x
    return crops(torch.cat([padded, padded.flip(-1)]), source, top, left, (h, w))
