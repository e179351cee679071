"""The one synthetic data set of every benchmark: seeded, in memory, no files to read.

Smooth colour images with mild noise, so that JPEG and the blurs cost what they cost on photos;
the model and most augmentation ops cost the same whatever the content.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from robench.data import DataIdentity, ImageData


def synthetic_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3) images, the same for the same seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 6, 6, 3)).astype(np.float32)
    smooth = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_CUBIC) for c in coarse])
    noisy = smooth + rng.normal(0, 6, smooth.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def synthetic_data(n: int, num_classes: int = 10, size: int = 32, seed: int = 0) -> ImageData:
    """:func:`synthetic_images` as a labelled set (labels 0, 1, ..., cycling)."""
    images = torch.from_numpy(synthetic_images(n, size, seed)).permute(0, 3, 1, 2).contiguous()
    labels = torch.arange(n) % num_classes
    identity = DataIdentity("synthetic", "train", n, "-", "memory")
    return ImageData(images, labels, [str(k) for k in range(num_classes)], identity)
