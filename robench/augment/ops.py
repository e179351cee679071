"""PIL image operations shared by AugMix, PixMix and IPMix (their ``augmentations.py``,
``pixmix_utils.py``, ``IPMix_utils.py``; docs/methods.md#image-ops).

Every op has the signature ``op(image, severity, rng) -> image`` (PIL RGB in and out). Ops with a
magnitude draw it as in the official code: ``level = Uniform(0.1, severity)`` afresh at every
application, then ``int_par``/``flt_par`` scale it, and geometric ops flip its sign with p = 1/2
(level drawn before the sign). The magnitudes are exposed as ``*_param`` functions so tests can
check their ranges. All draws come from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

Op = Callable[[Image.Image, float, np.random.Generator], Image.Image]


def level(severity: float, rng: np.random.Generator) -> float:
    """The official ``sample_level``: a fresh magnitude in [0.1, severity)."""
    return float(rng.uniform(0.1, severity))


def int_par(lev: float, vmax: float) -> int:
    """Magnitude scaled to [0, vmax] and truncated, as the official ``int_parameter``."""
    return int(lev * vmax / 10)


def flt_par(lev: float, vmax: float) -> float:
    return float(lev) * vmax / 10


def random_sign(rng: np.random.Generator) -> int:
    """-1 with p = 1/2 (the official ``if np.random.uniform() > 0.5: negate``)."""
    return -1 if rng.uniform() > 0.5 else 1


# --- magnitudes ------------------------------------------------------------------------------


def posterize_bits(severity: float, rng: np.random.Generator) -> int:
    return 4 - int_par(level(severity, rng), 4)


def solarize_threshold(severity: float, rng: np.random.Generator) -> int:
    return 256 - int_par(level(severity, rng), 256)


def rotate_degrees(severity: float, rng: np.random.Generator) -> int:
    return int_par(level(severity, rng), 30) * random_sign(rng)


def shear_coefficient(severity: float, rng: np.random.Generator) -> float:
    return flt_par(level(severity, rng), 0.3) * random_sign(rng)


def translate_pixels(severity: float, rng: np.random.Generator, size: int) -> int:
    """Up to a third of the image side (``IMAGE_SIZE / 3`` in the official code)."""
    return int_par(level(severity, rng), size / 3) * random_sign(rng)


def enhance_factor(severity: float, rng: np.random.Generator) -> float:
    """In [0.118, 1.9): below 1 (a reduction) for every severity <= 5."""
    return flt_par(level(severity, rng), 1.8) + 0.1


def autocontrast_cutoff(severity: float, rng: np.random.Generator) -> float:
    """IPMix's all-ops autocontrast clips this percentage of the histogram (AugMix/PixMix: 0)."""
    return 10 - flt_par(level(severity, rng), 10)


# --- ops ----------------------------------------------------------------------------------------


def autocontrast(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return ImageOps.autocontrast(img)


def autocontrast_cut(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return ImageOps.autocontrast(img, cutoff=autocontrast_cutoff(severity, rng))


def equalize(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return ImageOps.equalize(img)


def posterize(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return ImageOps.posterize(img, posterize_bits(severity, rng))


def solarize(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return ImageOps.solarize(img, solarize_threshold(severity, rng))


def rotate(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return img.rotate(rotate_degrees(severity, rng), resample=Image.Resampling.BILINEAR)


def _affine(img: Image.Image, coeffs: tuple[float, ...]) -> Image.Image:
    """PIL affine: output (x, y) samples input (a x + b y + c, d x + e y + f); black fill."""
    return img.transform(
        img.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
    )


def shear_x(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return _affine(img, (1, shear_coefficient(severity, rng), 0, 0, 1, 0))


def shear_y(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return _affine(img, (1, 0, 0, shear_coefficient(severity, rng), 1, 0))


def translate_x(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return _affine(img, (1, 0, translate_pixels(severity, rng, img.size[0]), 0, 1, 0))


def translate_y(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return _affine(img, (1, 0, 0, 0, 1, translate_pixels(severity, rng, img.size[1])))


def color(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Color(img).enhance(enhance_factor(severity, rng))


def contrast(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Contrast(img).enhance(enhance_factor(severity, rng))


def brightness(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Brightness(img).enhance(enhance_factor(severity, rng))


def sharpness(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Sharpness(img).enhance(enhance_factor(severity, rng))


def mirror(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return ImageOps.mirror(img)


def invert(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
    return ImageOps.invert(img)


#: AugMix / PixMix ``augmentations`` (9 ops): none overlaps an ImageNet-C corruption.
AUGMIX_OPS: tuple[Op, ...] = (
    autocontrast, equalize, posterize, rotate, solarize, shear_x, shear_y, translate_x, translate_y
)  # fmt: skip
#: AugMix / PixMix ``augmentations_all`` (13 ops, ``--all-ops``).
AUGMIX_ALL_OPS: tuple[Op, ...] = (*AUGMIX_OPS, color, contrast, brightness, sharpness)
#: IPMix ``augmentations`` (10 ops; every CIFAR run uses this list).
IPMIX_OPS: tuple[Op, ...] = (
    equalize, posterize, rotate, solarize, shear_x, shear_y, translate_x, translate_y,
    mirror, invert,
)  # fmt: skip
#: IPMix ``augmentations_all`` (15 ops, ImageNet ``--all-ops``), with the cutoff autocontrast.
IPMIX_ALL_OPS: tuple[Op, ...] = (
    autocontrast_cut, equalize, posterize, rotate, solarize, shear_x, shear_y, translate_x,
    translate_y, color, contrast, brightness, sharpness, mirror, invert,
)  # fmt: skip


def random_op(
    image: np.ndarray, ops: Sequence[Op], severity: float, rng: np.random.Generator
) -> np.ndarray:
    """One op drawn uniformly (with replacement) from ``ops``, on a uint8 (H, W, 3) array."""
    op = ops[rng.integers(len(ops))]
    return np.asarray(op(Image.fromarray(image), severity, rng))
