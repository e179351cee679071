"""CIFAR-10-P perturbation sequences and the flip probability (Hendrycks & Dietterich 2019).

Each sequence follows hendrycks/robustness ``make_cifar_p.py`` frame for frame; ImageMagick's
motion blur is the NumPy line kernel of the corruptions module, and ``torchvision``'s affine is
today's (``interpolation=`` instead of the removed ``resample=``; for PIL images it
now rotates and scales about (W/2, H/2) where 2018 versions used (W/2 + 0.5, H/2 + 0.5)).
As for the corruptions, every random draw comes from the caller's per-image generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
from PIL import Image

from robench.data.corruption_constants import ALL_PERTURBATIONS
from robench.data.corruptions import (
    clipped_zoom,
    gaussian_filter_images,
    hsv_to_rgb,
    motion_blur_images,
    rgb_to_hsv,
    water_spatter,
)
from robench.errors import ConfigError

# Noise strength by difficulty 1..3 (files <name>.npy, <name>_2.npy, <name>_3.npy; make_cifar_p.py).
# Only the noise sequences have difficulty variants of their data; for the others, difficulty is
# the frame step of the flip probability.
NOISE_LEVELS: dict[str, tuple[float, float, float]] = {
    "gaussian_noise": (0.02, 0.04, 0.06),
    "shot_noise": (700, 400, 200),
    "speckle_noise": (0.05, 0.07, 0.1),
}

FRAMES: dict[str, int] = {name: 31 for name in ALL_PERTURBATIONS} | {
    "motion_blur": 21,
    "translate": 16,
}

Rngs = Sequence[np.random.Generator]
Sequences = np.ndarray  # uint8 (N, T, H, W, 3)


def is_noise(name: str) -> bool:
    """Noise sequences compare every frame with the clean frame 0 (cifar-p-eval's rule)."""
    return "noise" in name


def _torch_affine(
    x: np.ndarray,
    *,
    angle: float = 0.0,
    translate: tuple[int, int] = (0, 0),
    scale: float = 1.0,
    shear: float = 0.0,
    bilinear: bool = True,
) -> np.ndarray:
    """``torchvision`` affine on PIL images, per image (fill 0); the centre crop to the input
    size that some reference sequences apply afterwards is the identity here."""
    import torchvision.transforms.functional as tvf

    mode = tvf.InterpolationMode.BILINEAR if bilinear else tvf.InterpolationMode.NEAREST
    out = [
        tvf.affine(
            Image.fromarray(img),
            angle=angle,
            translate=list(translate),
            scale=scale,
            shear=[shear, 0.0],
            interpolation=mode,
        )
        for img in x
    ]
    return np.stack([np.asarray(img) for img in out])


def _gaussian_noise(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    sigma = np.float32(NOISE_LEVELS["gaussian_noise"][difficulty - 1])
    # torch ToTensor: float32 / 255; clamp; to_numpy: uint8(x * 255), i.e. truncation.
    clean = x.astype(np.float32) / np.float32(255)
    noise = np.stack([r.standard_normal((30, *x.shape[1:]), dtype=np.float32) for r in rngs])
    frames = (np.clip(clean[:, None] + sigma * noise, 0, 1) * 255).astype(np.uint8)
    return np.concatenate([x[:, None], frames], axis=1)


def _shot_noise(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    lam = NOISE_LEVELS["shot_noise"][difficulty - 1]
    scaled = x / 255.0 * lam
    counts = np.stack([r.poisson(scaled[i], size=(30, *x.shape[1:])) for i, r in enumerate(rngs)])
    frames = (255 * np.clip(counts / lam, 0, 1)).astype(np.uint8)
    return np.concatenate([x[:, None], frames], axis=1)


def _speckle_noise(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    c = NOISE_LEVELS["speckle_noise"][difficulty - 1]
    clean = x / 255.0
    noise = np.stack([r.normal(size=(30, *x.shape[1:]), scale=c) for r in rngs])
    frames = (255 * np.clip(clean[:, None] + clean[:, None] * noise, 0, 1)).astype(np.uint8)
    return np.concatenate([x[:, None], frames], axis=1)


def _motion_blur(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    # Radius 6, sigma 1.8, angle (i - 20) * 9 degrees: -180 .. 0; no clean frame.
    frames = [motion_blur_images(x, 6, 1.8, np.full(len(x), (i - 20) * 9.0)) for i in range(21)]
    return np.clip(np.stack(frames, axis=1), 0, 255).astype(np.uint8)


def _zoom_blur(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    # Running mean of the clean image and affine zooms 1 + 0.004 k, k = 1..i, in float32 as the
    # reference's tensors; ToPILImage truncates.
    avg = x.astype(np.float32) / np.float32(255)
    frames = [x]
    for i in range(1, 31):
        zoomed = _torch_affine(x, scale=1 + 0.004 * i)
        avg += zoomed.astype(np.float32) / np.float32(255)
        frames.append((avg / np.float32(i + 1) * np.float32(255)).astype(np.uint8))
    return np.stack(frames, axis=1)


def _snow(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    n, h, w = x.shape[:3]
    layer = np.stack([r.normal(size=(h, w), loc=0.05, scale=0.3) for r in rngs])
    layer = clipped_zoom(layer, 2)
    layer[layer < 0.5] = 0
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8)[..., None]  # the PNG round trip
    clean = x / 255.0
    gray = cv2.cvtColor(clean.astype(np.float32).reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY)
    base = 0.85 * clean + (1 - 0.85) * np.maximum(clean, gray.reshape(n, h, w, 1) * 1.5 + 0.5)
    frames = []
    for i in range(31):
        moving = motion_blur_images(layer, 10, 2, np.full(n, i * 4.0 - 150))
        moving = np.clip(moving, 0, 255).astype(np.uint8) / 255.0
        frame = base + moving + np.rot90(moving, k=2, axes=(1, 2))
        frames.append((np.clip(frame, 0, 1) * 255).astype(np.uint8))
    return np.stack(frames, axis=1)


def _brightness(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    hsv = rgb_to_hsv(x / 255.0)
    frames = []
    for i in range(31):
        shifted = hsv.copy()
        shifted[..., 2] = np.clip(shifted[..., 2] + (i - 15) * 1.5 / 100.0, 0, 1)
        frames.append((hsv_to_rgb(shifted) * 255).astype(np.uint8))  # no clip in the reference
    return np.stack(frames, axis=1)


def _translate(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    # Horizontal shifts -7 .. +8 px, nearest (the old default resample=0), zero fill.
    frames = [_torch_affine(x, translate=(i - 7, 0), bilinear=False) for i in range(16)]
    return np.stack(frames, axis=1)


def _rotate(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    return np.stack([_torch_affine(x, angle=i - 15.0) for i in range(31)], axis=1)


def _scale(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    return np.stack([_torch_affine(x, scale=(i * 2 + 70) / 100.0) for i in range(31)], axis=1)


def _shear(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    return np.stack([_torch_affine(x, shear=i - 15.0) for i in range(31)], axis=1)


def tilt_matrix(i: int, h: int, w: int) -> np.ndarray:
    """The reference's perspective matrix for frame i: rotate about x and y by 0.75 (i - 15)
    degrees, camera at distance sqrt(w^2 + h^2), focal length the same.

    Quirk kept: the image plane sits at depth 1, not 0, so even frame 15 (no rotation) shrinks
    the image about its centre by f / (f + 1) (~2 % at 32 px).
    """
    phi = theta = np.deg2rad(0.75 * (i - 15))
    f = np.sqrt(w**2 + h**2)
    p1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
    rx = np.array(
        [
            [1, 0, 0, 0],
            [0, np.cos(theta), -np.sin(theta), 0],
            [0, np.sin(theta), np.cos(theta), 0],
            [0, 0, 0, 1],
        ]
    )
    ry = np.array(
        [
            [np.cos(phi), 0, -np.sin(phi), 0],
            [0, 1, 0, 0],
            [np.sin(phi), 0, np.cos(phi), 0],
            [0, 0, 0, 1],
        ]
    )
    t = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
    p2 = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
    return p2 @ t @ rx @ ry @ p1


def _tilt(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    h, w = x.shape[1:3]
    mats = [tilt_matrix(i, h, w) for i in range(31)]
    # OpenCV defaults: bilinear, constant 0 border.
    return np.stack([np.stack([cv2.warpPerspective(img, m, (w, h)) for m in mats]) for img in x])


def _spatter(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    h, w = x.shape[1:3]
    liquid = np.stack([r.normal(size=(h, w), loc=0.6, scale=0.265) for r in rngs])
    liquid = gaussian_filter_images(liquid, 1.75)
    liquid[liquid < 0.7] = 0
    clean = x.astype(np.float32) / 255.0
    frames = []
    for _ in range(31):
        frames.append(
            np.stack([water_spatter(img, lq, 0.6) for img, lq in zip(clean, liquid, strict=True)])
        )
        # "Drip": each column convolved with [0.2, 0.8] (np.convolve mode 'same'), so a row
        # becomes 0.2 * itself + 0.8 * the row above (zero above the first).
        dripped = 0.2 * liquid
        dripped[:, 1:] += 0.8 * liquid[:, :-1]
        liquid = dripped
    return np.stack(frames, axis=1)


def _gaussian_blur(x: np.ndarray, rngs: Rngs, difficulty: int) -> Sequences:
    clean = x / 255.0
    frames = [
        (255 * gaussian_filter_images(clean, 0.3 + 0.015 * i, truncate=7.0)).astype(np.uint8)
        for i in range(31)
    ]
    return np.stack(frames, axis=1)


PERTURBATIONS: dict[str, Callable[[np.ndarray, Rngs, int], Sequences]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "spatter": _spatter,
    "brightness": _brightness,
    "translate": _translate,
    "rotate": _rotate,
    "tilt": _tilt,
    "scale": _scale,
    "snow": _snow,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "shear": _shear,
}
CHUNK = 32  # images per vectorised call


def perturb_batch(images: np.ndarray, name: str, rngs: Rngs, *, difficulty: int = 1) -> np.ndarray:
    """Sequences (N, T, H, W, 3) uint8 for uint8 images (N, H, W, 3), image i drawing from
    ``rngs[i]`` only."""
    if name not in PERTURBATIONS:
        raise ConfigError(
            f"unknown perturbation {name!r}; choose from {', '.join(ALL_PERTURBATIONS)}"
        )
    if difficulty not in (1, 2, 3):
        raise ConfigError(f"difficulty must be 1, 2 or 3, got {difficulty!r}")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ConfigError(
            f"perturbations take uint8 RGB images (N, H, W, 3); got {images.dtype} {images.shape}"
        )
    if len(rngs) != len(images):
        raise ConfigError(f"need one generator per image: {len(rngs)} for {len(images)} images")
    out = np.empty((len(images), FRAMES[name], *images.shape[1:]), dtype=np.uint8)
    for start in range(0, len(images), CHUNK):
        stop = start + CHUNK
        out[start:stop] = PERTURBATIONS[name](images[start:stop], rngs[start:stop], difficulty)
    return out


def perturb(
    image: np.ndarray, name: str, rng: np.random.Generator, *, difficulty: int = 1
) -> np.ndarray:
    """One image's sequence (T, H, W, 3); identical to its row of :func:`perturb_batch`."""
    return perturb_batch(np.asarray(image)[None], name, [rng], difficulty=difficulty)[0]
