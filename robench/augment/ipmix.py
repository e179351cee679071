"""``ipmix``: IPMix as the official ``cifar.py`` / ``IPMix_utils.py`` do it (spec methods.md §1).

Paper (arXiv 2310.04780 v5) vs code differences (spec §9) are options whose defaults are the
code's, since the code produced the released numbers:

* ``min_chain_length``: chain length uniform on {min_chain_length, ..., t}. Code: 0 (a quarter
  of the chains are the identity); paper Algorithm 1: 1.
* ``p_source``: what a patch step mixes in. ``"mixing"`` (code ``cifar.py``): always the mixing
  picture. ``"mixing_or_op"`` (paper Algorithm 1, ``imagenet.py``): the mixing picture or, with
  p = 1/2, one random image op applied to the original image.
* ``quantize``: the mixed patch goes back to uint8. ``"faithful"`` (code): x 255, truncate,
  wrap modulo 256, no clamp, exactly as torch's ``.byte()`` inside ``ToPILImage`` (see
  :func:`~robench.augment.mixing_ops.quantize_faithful`); ``"clamped"``: clamp to [0, 1] first.
* The paper's Beta-mask patch rule (§4.1) is not offered: the spec gives no Beta parameters for it
  and the paper's own Algorithm 1 uses the four operators the code uses.

ImageNet settings (``imagenet.py``): ``patch_sizes=[4, 8, 16, 32, 64, 224]``, ``all_ops=True``
(15 ops incl. color/contrast/brightness/sharpness and cutoff autocontrast), ``beta=4``,
``severity=1``, ``p_source="mixing_or_op"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from robench.augment.base import AUGMENTATIONS, to_float_chw
from robench.augment.mixing_ops import (
    IPMIX_MIXINGS,
    augment_and_mix,
    quantize_clamped,
    quantize_faithful,
)
from robench.augment.ops import IPMIX_ALL_OPS, IPMIX_OPS, random_op
from robench.augment.views import MixViews
from robench.errors import ConfigError

QUANTIZERS = {"faithful": quantize_faithful, "clamped": quantize_clamped}
P_SOURCES = ("mixing", "mixing_or_op")


def sample_chain(t: int, min_length: int, rng: np.random.Generator) -> tuple[bool, int]:
    """(patch branch?, number of steps): P-level or image-level with p = 1/2, then a length
    uniform on {min_length, ..., t}. At the defaults P(identity) = 1/4 and the mean is 1.5."""
    patch = bool(rng.random() < 0.5)
    return patch, int(rng.integers(min_length, t + 1))


def patch_box(
    height: int, width: int, size: int, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a patch inside the image: an s x s square, or with p = 1/2 a
    "scar" with independent sides uniform on {2, ..., s}."""
    left = int(rng.integers(width - size + 1))
    top = int(rng.integers(height - size + 1))
    if rng.random() > 0.5:
        return top, left, size, size
    w, h = rng.integers(2, size + 1, size=2)
    return top, left, int(h), int(w)


@AUGMENTATIONS.register(
    "ipmix", description="IPMix: image-, patch- and pixel-level mixing with fractals, JSD loss"
)
class IPMix(MixViews):
    """IPMix: k chains, each (p = 1/2) 0..t PIL ops or 0..t patch-mixing steps with the mixing
    picture (patch side from ``patch_sizes``, square or scar, one of add / multiply / random
    pixels / random elements at ``beta``); chains mixed with Dirichlet(1) weights and blended
    with the clean image by a Beta(1, 1) weight, as AugMix does.

    Defaults are the official CIFAR code's: k = 3, t = 3, beta = 3, severity 3, the 10 IPMix
    ops, patch sides {4, 8, 16, 32}, JSD on (clean + 2 views sharing one mixing picture, weight
    12). Paper-vs-code options: see the module docstring.
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int = 32,
        k: int = 3,
        t: int = 3,
        beta: float = 3,
        severity: float = 3,
        patch_sizes: Sequence[int] = (4, 8, 16, 32),
        all_ops: bool = False,
        min_chain_length: int = 0,
        p_source: str = "mixing",
        quantize: str = "faithful",
        mixing_set: str = "fractals",
        mixing_count: int = 1000,
        jsd: bool = True,
        jsd_weight: float = 12.0,
        padding: int = 4,
    ) -> None:
        patch_sizes = tuple(int(s) for s in patch_sizes)
        if k < 1 or t < 0 or not 0 <= min_chain_length <= t or beta <= 0:
            raise ConfigError(
                f"ipmix needs k >= 1, 0 <= min_chain_length <= t, beta > 0; got k={k}, t={t}, "
                f"min_chain_length={min_chain_length}, beta={beta}"
            )
        if not 0 < severity <= 10:
            raise ConfigError(f"ipmix severity must be in (0, 10], got {severity}")
        if not patch_sizes or not all(2 <= s <= image_size for s in patch_sizes):
            raise ConfigError(
                f"ipmix patch_sizes must lie in [2, image_size={image_size}], got {patch_sizes}"
            )
        if p_source not in P_SOURCES:
            raise ConfigError(f"ipmix p_source must be one of {P_SOURCES}, got {p_source!r}")
        if quantize not in QUANTIZERS:
            raise ConfigError(f"ipmix quantize must be one of {list(QUANTIZERS)}, got {quantize!r}")
        super().__init__(
            num_classes,
            image_size,
            jsd=jsd,
            jsd_weight=jsd_weight,
            padding=padding,
            mixing_set=mixing_set,
            mixing_count=mixing_count,
        )
        self.k, self.t, self.beta, self.severity = k, t, beta, severity
        self.patch_sizes = patch_sizes
        self.all_ops = bool(all_ops)
        self.ops = IPMIX_ALL_OPS if self.all_ops else IPMIX_OPS
        self.min_chain_length = min_chain_length
        self.p_source = p_source
        self.quantize = quantize

    def patch_step(
        self, y: np.ndarray, x: np.ndarray, mixing: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """One P-level step on the chain state ``y`` (uint8 HWC); ``x`` is the chain's input."""
        size = self.patch_sizes[rng.integers(len(self.patch_sizes))]
        op = IPMIX_MIXINGS[rng.integers(len(IPMIX_MIXINGS))]
        if self.p_source == "mixing_or_op" and rng.random() <= 0.5:
            mixing = random_op(x, self.ops, self.severity, rng)
        top, left, h, w = patch_box(*y.shape[:2], size, rng)
        box = np.s_[top : top + h, left : left + w]
        mixed = op(to_float_chw(y[box]), to_float_chw(mixing[box]), self.beta, rng)
        out = y.copy()
        out[box] = QUANTIZERS[self.quantize](mixed)
        return out

    def chain(self, x: np.ndarray, mixing: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        patch, steps = sample_chain(self.t, self.min_chain_length, rng)
        y = x
        for _ in range(steps):
            if patch:
                y = self.patch_step(y, x, mixing, rng)
            else:
                y = random_op(y, self.ops, self.severity, rng)
        return y

    def view(
        self, x: np.ndarray, mixing: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray:
        assert mixing is not None  # MixViews always draws one: mixing_set is set
        return augment_and_mix(x, lambda img, r: self.chain(img, mixing, r), self.k, 1.0, rng)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "k": self.k,
            "t": self.t,
            "beta": self.beta,
            "severity": self.severity,
            "patch_sizes": list(self.patch_sizes),
            "all_ops": self.all_ops,
            "min_chain_length": self.min_chain_length,
            "p_source": self.p_source,
            "quantize": self.quantize,
        }
