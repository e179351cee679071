"""Pixel mixing operators of PixMix/IPMix, AugMix's convex chain mix, and uint8 quantisation.

Arrays are float32 (C, H, W) in [0, 1] (``ToTensor`` space). Every operator has the signature
``op(x1, x2, beta, rng)`` with ``x1`` the image (patch) and ``x2`` the mixing picture (patch);
``add``/``multiply`` may leave [0, 1] (PixMix clamps afterwards, IPMix quantises, see below).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from robench.augment.base import to_float_chw

MixOp = Callable[[np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray]


def sample_ab(beta: float, rng: np.random.Generator) -> tuple[np.float32, np.float32]:
    """PixMix's ``get_ab``: (a, b) in (0,1)x(0,1) or, with p = 1/2, (1,2)x(-1,0); a drawn first."""
    if rng.random() < 0.5:
        a = np.float32(rng.beta(beta, 1))
        b = np.float32(rng.beta(1, beta))
    else:
        a = np.float32(1 + rng.beta(1, beta))
        b = np.float32(-rng.beta(1, beta))
    return a, b


def add(x1: np.ndarray, x2: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
    """``(a (2 x1 - 1) + b (2 x2 - 1) + 1) / 2``: a weighted sum in [-1, 1] space."""
    a, b = sample_ab(beta, rng)
    return (a * (x1 * 2 - 1) + b * (x2 * 2 - 1) + 1) / 2


def multiply(x1: np.ndarray, x2: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
    """``(2 x1)^a * max(2 x2, 1e-37)^b / 2``; a zero in x2 with b < 0 gives values up to ~1e37."""
    a, b = sample_ab(beta, rng)
    return (x1 * 2) ** a * np.maximum(x2 * 2, np.float32(1e-37)) ** b / 2


def random_pixels(
    x1: np.ndarray, x2: np.ndarray, beta: float, rng: np.random.Generator
) -> np.ndarray:
    """Each pixel (all channels together) from x1 with probability ``thr ~ U(0, 1)``, else x2."""
    thr = rng.random()
    mask = rng.random(x1.shape[1:]) < thr
    return np.where(mask[None], x1, x2)


def random_elems(
    x1: np.ndarray, x2: np.ndarray, beta: float, rng: np.random.Generator
) -> np.ndarray:
    """Like ``random_pixels`` but every channel element draws on its own."""
    thr = rng.random()
    mask = rng.random(x1.shape) < thr
    return np.where(mask, x1, x2)


PIXMIX_MIXINGS: tuple[MixOp, ...] = (add, multiply)
IPMIX_MIXINGS: tuple[MixOp, ...] = (add, multiply, random_pixels, random_elems)


def quantize_faithful(p: np.ndarray) -> np.ndarray:
    """float [0, 1] (C, H, W) -> uint8 (H, W, C) the way IPMix's ``ToPILImage`` does it, no clamp.

    ``p * 255`` in float32, truncated toward zero, wrapped modulo 256, as torch CPU ``.byte()``
    behaves (torch 2.14, x86: 300.7 -> 44, -3.2 -> 253, 255.9 -> 255); non-finite values give 0,
    like torch. Done explicitly in float64 so no undefined float->int cast is involved: every
    float32 with magnitude >= 2**32 is a multiple of 256 and therefore also maps to 0.
    """
    v = np.trunc(p.astype(np.float32) * np.float32(255)).astype(np.float64)
    v = np.where(np.isfinite(v), v, 0.0)
    return np.mod(v, 256).astype(np.uint8).transpose(1, 2, 0)


def quantize_clamped(p: np.ndarray) -> np.ndarray:
    """float (C, H, W) -> uint8 (H, W, C): clamp to [0, 1] first (PixMix-style), then truncate."""
    return (np.clip(p, 0, 1) * np.float32(255)).astype(np.uint8).transpose(1, 2, 0)


Chain = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def augment_and_mix(
    x: np.ndarray, chain: Chain, width: int, alpha: float, rng: np.random.Generator
) -> np.ndarray:
    """AugMix's mix, reused by IPMix: Dirichlet(alpha)-weighted chains, Beta(alpha, alpha) skip.

    ``x`` is uint8 (H, W, 3); ``chain(x, rng)`` returns one augmented uint8 copy of it. Returns
    float32 (3, H, W) ``(1 - m) x + m sum_i w_i chain_i(x)`` in [0, 1]; a convex mix in [0, 1]
    equals the official mix in Normalize(0.5, 0.5) space because normalising is affine.
    """
    w = rng.dirichlet([alpha] * width).astype(np.float32)
    m = np.float32(rng.beta(alpha, alpha))
    acc = sum(wi * to_float_chw(chain(x, rng)) for wi in w)
    return np.clip((1 - m) * to_float_chw(x) + m * acc, 0, 1)
