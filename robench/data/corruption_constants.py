"""Names and severity constants of the corruption and perturbation benchmarks
(hendrycks/robustness), as data: cheap to import, so the evaluators' defaults and the report
need no generator.

The CIFAR table is the one of hendrycks/robustness ``make_cifar_c.py``, the Tiny table that of
``make_tinyimagenet_c.py`` (64x64 inputs), the ImageNet table that of ``make_imagenet_c.py``
(224x224 inputs). The algorithms are size-generic, so a table is the only thing that differs
between them. Every value is copied as the reference computes it
(e.g. the elastic constants are ``32 * 0.08``, not a rounded ``2.56``), because the outputs
depend on the exact floats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from robench.errors import ConfigError
from robench.io import hash_text

BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
# The four "validation" corruptions: never part of the mean corruption error (hendrycks/robustness
# issue #36).
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES = (1, 2, 3, 4, 5)

# The 10 sequences that cifar-p-eval.py evaluates (spatter included, snow commented out there).
TEST_PERTURBATIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "motion_blur",
    "zoom_blur",
    "spatter",
    "brightness",
    "translate",
    "rotate",
    "tilt",
    "scale",
)
VALIDATION_PERTURBATIONS: tuple[str, ...] = ("snow", "speckle_noise", "gaussian_blur", "shear")
ALL_PERTURBATIONS: tuple[str, ...] = TEST_PERTURBATIONS + VALIDATION_PERTURBATIONS

CATEGORIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra": EXTRA_CORRUPTIONS,
}

# Zoom-blur factor lists, as the reference's float `np.arange` produces them (make_cifar_c.py):
# one element more than the naive reading, and the trailing float error matters, because scipy's
# zoom sizes its output with round(side * factor) (e.g. 26 * 1.2500000000000002 -> 33, not 32).
_ZOOM_001 = (
    1.0, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06, 1.07, 1.08, 1.09, 1.1, 1.11, 1.12,
    1.1300000000000001, 1.1400000000000001, 1.1500000000000001, 1.1600000000000001,
    1.1700000000000002, 1.1800000000000002, 1.1900000000000002, 1.2000000000000002,
    1.2100000000000002, 1.2200000000000002, 1.2300000000000002, 1.2400000000000002,
    1.2500000000000002,
)  # fmt: skip
_ZOOM_002 = (
    1.0, 1.02, 1.04, 1.06, 1.08, 1.1, 1.12, 1.1400000000000001, 1.1600000000000001,
    1.1800000000000002, 1.2000000000000002, 1.2200000000000002, 1.2400000000000002,
)  # fmt: skip
_ZOOM_003 = (
    1.0, 1.03, 1.06, 1.09, 1.12, 1.1500000000000001, 1.1800000000000002, 1.2100000000000002,
    1.2400000000000002, 1.2700000000000002, 1.3000000000000003,
)  # fmt: skip


def _elastic(size: int, rows: tuple[tuple[float, float, float], ...]) -> tuple[tuple, ...]:
    """(alpha, sigma, affine jitter) in pixels, computed as ``size * fraction`` like the source."""
    return tuple((size * a, size * s, size * j) for a, s, j in rows)


@dataclass(frozen=True)
class ConstantsTable:
    """One benchmark's parameters: ``params[name][severity - 1]``."""

    name: str
    image_size: int  # the size the table was made for (the functions accept any square size)
    frost_scale: float  # frost pictures are resized by this first (CIFAR 0.2, Tiny 0.3, ImageNet 1)
    params: Mapping[str, tuple[Any, ...]] = field(repr=False)

    def get(self, corruption: str, severity: int) -> Any:
        if corruption not in self.params:
            raise ConfigError(
                f"unknown corruption {corruption!r}; choose from {', '.join(ALL_CORRUPTIONS)}"
            )
        if not isinstance(severity, int) or not 1 <= severity <= 5:
            raise ConfigError(f"severity must be an integer 1..5, got {severity!r}")
        return self.params[corruption][severity - 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image_size": self.image_size,
            "frost_scale": self.frost_scale,
            "params": {
                k: [list(v) if isinstance(v, tuple) else v for v in vs]
                for k, vs in self.params.items()
            },
        }

    def hash(self) -> str:
        """Content hash of the table, recorded in every generated set's manifest."""
        return hash_text(json.dumps(self.to_dict(), sort_keys=True))


CIFAR = ConstantsTable(
    name="cifar",
    image_size=32,
    frost_scale=0.2,
    params={
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "shot_noise": (500, 250, 100, 75, 50),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        # (disk radius, anti-alias sigma)
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        # (sigma, max offset delta, iterations)
        "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        # (radius, sigma)
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "zoom_blur": (_ZOOM_001[:7], _ZOOM_001[:12], _ZOOM_001[:16], _ZOOM_001[:21], _ZOOM_001),
        # (mean, std, zoom, threshold, blur radius, blur sigma, blend)
        "snow": (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        # (image weight, frost weight)
        "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        # (amplitude, wibble decay)
        "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        "elastic_transform": _elastic(
            32,
            (
                (0, 0, 0.08),
                (0.05, 0.2, 0.07),
                (0.08, 0.06, 0.06),
                (0.1, 0.04, 0.05),
                (0.1, 0.03, 0.03),
            ),
        ),
        "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
        "jpeg_compression": (80, 65, 58, 50, 40),
        "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
        # (mean, std, blur sigma, threshold, intensity, mode 0 water / 1 mud)
        "spatter": (
            (0.62, 0.1, 0.7, 0.7, 0.5, 0),
            (0.65, 0.1, 0.8, 0.7, 0.5, 0),
            (0.65, 0.3, 1, 0.69, 0.5, 0),
            (0.65, 0.1, 0.7, 0.69, 0.6, 1),
            (0.65, 0.1, 0.5, 0.68, 0.6, 1),
        ),
        # (saturation factor, saturation offset)
        "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    },
)

IMAGENET = ConstantsTable(
    name="imagenet",
    image_size=224,
    frost_scale=1.0,
    params={
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "zoom_blur": (_ZOOM_001[:12], _ZOOM_001[:16], _ZOOM_002[:11], _ZOOM_002, _ZOOM_003),
        "snow": (
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ),
        "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
        "fog": ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        # The source multiplies by 244 ("should have been 224"); kept as is (make_imagenet_c.py).
        "elastic_transform": _elastic(
            244,
            (
                (2, 0.7, 0.1),
                (2, 0.08, 0.2),
                (0.05, 0.01, 0.02),
                (0.07, 0.01, 0.02),
                (0.12, 0.01, 0.02),
            ),
        ),
        "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
        "jpeg_compression": (25, 18, 15, 10, 7),
        "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
        "gaussian_blur": (1, 2, 3, 4, 6),
        "spatter": (
            (0.65, 0.3, 4, 0.69, 0.6, 0),
            (0.65, 0.3, 3, 0.68, 0.6, 0),
            (0.65, 0.3, 2, 0.68, 0.5, 0),
            (0.65, 0.3, 1, 0.65, 1.5, 1),
            (0.67, 0.4, 1, 0.65, 1.5, 1),
        ),
        "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    },
)

# Tiny-ImageNet-C (64x64, ``make_tinyimagenet_c.py``, every value read from the script): the
# CIFAR algorithms with their own constants, frost pictures x0.3.
TINY = ConstantsTable(
    name="tiny",
    image_size=64,
    frost_scale=0.3,
    params={
        "gaussian_noise": (0.04, 0.08, 0.12, 0.15, 0.18),
        "shot_noise": (250, 100, 50, 30, 15),
        "impulse_noise": (0.01, 0.02, 0.05, 0.08, 0.14),
        "defocus_blur": ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
        "glass_blur": ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
        "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
        "zoom_blur": CIFAR.params["zoom_blur"],
        # CIFAR's snow layers with blends 0.8, 0.8, 0.7, 0.65, 0.6
        "snow": (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.8),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6),
        ),
        "frost": ((1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)),
        "fog": ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        "elastic_transform": _elastic(
            64,
            (
                (0, 0, 0.08),
                (0.05, 0.3, 0.06),
                (0.1, 0.08, 0.06),
                (0.1, 0.03, 0.03),
                (0.16, 0.03, 0.02),
            ),
        ),
        "pixelate": (0.9, 0.8, 0.7, 0.6, 0.5),
        "jpeg_compression": (65, 58, 50, 40, 25),
        "speckle_noise": (0.15, 0.2, 0.25, 0.3, 0.35),
        "gaussian_blur": (0.5, 0.75, 1, 1.25, 1.5),
        "spatter": (
            (0.62, 0.1, 0.7, 0.7, 0.6, 0),
            (0.65, 0.1, 0.8, 0.7, 0.6, 0),
            (0.65, 0.3, 1, 0.69, 0.6, 0),
            (0.65, 0.1, 0.7, 0.68, 0.6, 1),
            (0.65, 0.1, 0.5, 0.67, 0.6, 1),
        ),
        "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)),
    },
)

TABLES: dict[str, ConstantsTable] = {"cifar": CIFAR, "tiny": TINY, "imagenet": IMAGENET}


def get_constants(constants: str | ConstantsTable) -> ConstantsTable:
    """The table for ``"cifar"``, ``"tiny"`` or ``"imagenet"`` (a table passes through)."""
    if isinstance(constants, ConstantsTable):
        return constants
    try:
        return TABLES[constants]
    except KeyError:
        raise ConfigError(
            f"unknown corruption constants {constants!r}; choose from {', '.join(TABLES)}"
        ) from None
