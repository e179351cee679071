"""Mixing operators, quantisation and the AugMix-style mix against their definitions
(``pixmix_utils.py`` / ``IPMix_utils.py`` of the official code; docs/methods.md)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from robench.augment import mixing_ops as mo
from robench.augment.base import to_float_chw


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_sample_ab_ranges_and_means() -> None:
    g = rng()
    ab = np.array([mo.sample_ab(3, g) for _ in range(6000)])
    assert ab.dtype == np.float32
    low = ab[:, 0] < 1  # first branch: a ~ Beta(3, 1), b ~ Beta(1, 3)
    assert abs(low.mean() - 0.5) < 0.03
    a, b = ab[low].T
    assert ((a > 0) & (a < 1) & (b > 0) & (b < 1)).all()
    assert abs(a.mean() - 0.75) < 0.02 and abs(b.mean() - 0.25) < 0.02
    a, b = ab[~low].T  # second branch: a = 1 + Beta(1, 3), b = -Beta(1, 3)
    assert ((a > 1) & (a < 2) & (b > -1) & (b < 0)).all()
    assert abs(a.mean() - 1.25) < 0.02 and abs(b.mean() + 0.25) < 0.02


def test_add_and_multiply_formulas() -> None:
    x1 = rng(1).random((3, 4, 4), dtype=np.float32)
    x2 = rng(2).random((3, 4, 4), dtype=np.float32)
    for seed in range(6):
        a, b = mo.sample_ab(3, rng(seed))
        out = mo.add(x1, x2, 3, rng(seed))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, (a * (2 * x1 - 1) + b * (2 * x2 - 1) + 1) / 2, rtol=1e-6)
        out = mo.multiply(x1, x2, 3, rng(seed))
        np.testing.assert_allclose(out, (2 * x1) ** a * (2 * x2) ** b / 2, rtol=1e-5)
    grey = np.full((3, 2, 2), 0.5, np.float32)
    assert np.allclose(mo.add(grey, grey, 3, rng()), 0.5)  # 0 in [-1, 1] space stays 0
    assert np.allclose(mo.multiply(grey, grey, 3, rng()), 0.5)  # 1 ** a * 1 ** b / 2


def test_multiply_floor_on_black_gives_huge_values() -> None:
    seed = next(s for s in range(100) if mo.sample_ab(3, rng(s))[1] < -0.5)
    _, b = mo.sample_ab(3, rng(seed))
    out = mo.multiply(np.full((3, 1, 1), 0.5, np.float32), np.zeros((3, 1, 1), np.float32), 3,
                      rng(seed))  # fmt: skip
    np.testing.assert_allclose(out, np.float32(1e-37) ** b / 2, rtol=1e-5)
    assert out.min() > 1e17 and np.isfinite(out).all()


@pytest.mark.parametrize("op", [mo.random_pixels, mo.random_elems])
def test_random_masks(op) -> None:
    ones, zeros = np.ones((3, 32, 32), np.float32), np.zeros((3, 32, 32), np.float32)
    fractions = []
    for seed in range(200):
        thr = rng(seed).random()  # the op draws its threshold first
        out = op(ones, zeros, 3, rng(seed))
        assert set(np.unique(out)) <= {0.0, 1.0}
        frac = out.mean()
        assert abs(frac - thr) < 0.07  # 3072 (elems) or 1024 (pixels) Bernoulli(thr) draws
        fractions.append(frac)
        channels_agree = (out == out[:1]).all()
        if op is mo.random_pixels:
            assert channels_agree  # one mask shared by the three channels
        elif 0.1 < thr < 0.9:
            assert not channels_agree
    assert abs(np.mean(fractions) - 0.5) < 0.06  # thr ~ U(0, 1)


def test_quantize_faithful_matches_torch_byte() -> None:
    p = np.float32([1.2, -0.1, 0.0, 1.0, 2.0, 255.9 / 255, -1 / 255, 1e30, -1e30])
    p = np.concatenate([p, np.float32([np.inf, -np.inf, np.nan])])
    want = [50, 231, 0, 255, 254, 255, 255, 0, 0, 0, 0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast"
        got = mo.quantize_faithful(p[:, None, None])
    assert got.dtype == np.uint8 and got.shape == (1, 1, len(p))
    assert got.ravel().tolist() == want
    # the same as torch's CPU .byte() (what ToPILImage did) over the range add/multiply reach
    wide = (rng().normal(0, 3, (3, 64, 64)) * rng(1).choice([1, 1e3], (3, 64, 64))).astype("f4")
    expected = torch.from_numpy(wide).mul(255).byte().permute(1, 2, 0).numpy()
    assert np.array_equal(mo.quantize_faithful(wide), expected)


def test_quantize_clamped() -> None:
    p = np.float32([1.2, -0.1, 0.5, 1.0, 1e30])[:, None, None]
    assert mo.quantize_clamped(p).ravel().tolist() == [255, 0, 127, 255, 255]


def test_augment_and_mix_is_the_convex_mix(image: np.ndarray) -> None:
    black = np.zeros_like(image)
    out = mo.augment_and_mix(image, lambda x, r: black, 3, 1.0, rng(5))
    g = rng(5)
    g.dirichlet([1.0] * 3)
    m = np.float32(g.beta(1.0, 1.0))
    assert out.dtype == np.float32 and out.shape == (3, 32, 32)
    np.testing.assert_allclose(out, (1 - m) * to_float_chw(image), atol=1e-6)
    same = mo.augment_and_mix(image, lambda x, r: x, 3, 1.0, rng(5))
    np.testing.assert_allclose(same, to_float_chw(image), atol=1e-6)
