"""Image ops against their definitions (docs/methods.md#image-ops) on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from robench.augment import ops

N = 4000


def sample_many(fn, severity: float, **kw) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.array([fn(severity, rng, **kw) for _ in range(N)])


def same_draws(seed: int, op, img: Image.Image, severity: float = 3) -> Image.Image:
    return op(img, severity, np.random.default_rng(seed))


def test_level_and_parameter_helpers() -> None:
    levels = sample_many(ops.level, 3)
    assert levels.min() >= 0.1 and levels.max() < 3
    assert abs(levels.mean() - 1.55) < 0.05
    assert ops.int_par(2.99, 4) == 1 and ops.int_par(2.5, 4) == 1 and ops.int_par(2.49, 4) == 0
    assert ops.flt_par(2.0, 0.3) == pytest.approx(0.06)
    signs = sample_many(lambda s, r: ops.random_sign(r), 0)
    assert set(signs) == {-1, 1} and abs(signs.mean()) < 0.05


def test_posterize_bits_and_op() -> None:
    bits = sample_many(ops.posterize_bits, 3)
    assert set(bits) == {3, 4}
    # 3 bits kept iff level >= 2.5: probability 0.5 / 2.9
    assert abs((bits == 3).mean() - 0.5 / 2.9) < 0.03
    assert set(sample_many(ops.posterize_bits, 1)) == {4}
    img = Image.fromarray(np.full((4, 4, 3), 0b10110111, np.uint8))
    seen = set()
    for seed in range(40):
        kept = ops.posterize_bits(3, np.random.default_rng(seed))
        out = np.asarray(same_draws(seed, ops.posterize, img))
        assert (out == {4: 0b10110000, 3: 0b10100000}[kept]).all()
        seen.add(kept)
    assert seen == {3, 4}


def test_solarize_threshold_and_op() -> None:
    thr = sample_many(ops.solarize_threshold, 3)
    assert thr.min() >= 180 and thr.max() <= 254 and thr.min() <= 183 and thr.max() >= 252
    assert sample_many(ops.solarize_threshold, 1).min() >= 231
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    for seed in range(10):
        t = ops.solarize_threshold(3, np.random.default_rng(seed))
        out = np.asarray(same_draws(seed, ops.solarize, Image.fromarray(ramp)))[0, :, 0]
        v = np.arange(256)
        assert (out == np.where(v >= t, 255 - v, v)).all()


def test_rotate_range_and_op(image: np.ndarray) -> None:
    deg = sample_many(ops.rotate_degrees, 3)
    assert deg.dtype.kind == "i" and deg.min() == -8 and deg.max() == 8 and 0 in deg
    assert np.abs(sample_many(ops.rotate_degrees, 1)).max() == 2
    img = Image.fromarray(image)
    for seed in range(5):
        d = ops.rotate_degrees(3, np.random.default_rng(seed))
        want = img.rotate(d, resample=Image.Resampling.BILINEAR)
        assert np.array_equal(np.asarray(same_draws(seed, ops.rotate, img)), np.asarray(want))


def test_shear_range_and_ops(image: np.ndarray) -> None:
    s = sample_many(ops.shear_coefficient, 3)
    assert (s > 0).any() and (s < 0).any()
    assert np.abs(s).min() >= 0.003 - 1e-12 and np.abs(s).max() < 0.09
    assert np.abs(sample_many(ops.shear_coefficient, 1)).max() < 0.03
    img = Image.fromarray(image)
    for op, coeffs in ((ops.shear_x, lambda c: (1, c, 0, 0, 1, 0)),
                       (ops.shear_y, lambda c: (1, 0, 0, c, 1, 0))):  # fmt: skip
        c = ops.shear_coefficient(3, np.random.default_rng(7))
        want = img.transform(img.size, Image.Transform.AFFINE, coeffs(c), Image.Resampling.BILINEAR)
        assert np.array_equal(np.asarray(same_draws(7, op, img)), np.asarray(want))


def test_translate_range_and_moves_a_dot() -> None:
    px = sample_many(ops.translate_pixels, 3, size=32)
    assert set(px) == set(range(-3, 4))
    assert np.abs(sample_many(ops.translate_pixels, 1, size=224)).max() == 7
    dot = np.zeros((32, 32, 3), np.uint8)
    dot[12, 10] = 255  # row 12, column 10
    moved = 0
    for seed in range(20):
        d = ops.translate_pixels(3, np.random.default_rng(seed), 32)
        out_x = np.asarray(same_draws(seed, ops.translate_x, Image.fromarray(dot)))
        out_y = np.asarray(same_draws(seed, ops.translate_y, Image.fromarray(dot)))
        # PIL affine: output (x, y) samples input (x + d, y), so the dot moves by -d
        assert out_x[12, 10 - d, 0] == 255 and out_x.sum() == 255 * 3
        assert out_y[12 - d, 10, 0] == 255 and out_y.sum() == 255 * 3
        moved += d != 0
    assert moved > 0


def test_enhance_and_cutoff_ranges(image: np.ndarray) -> None:
    f = sample_many(ops.enhance_factor, 3)
    assert f.min() >= 0.118 and f.max() < 0.64
    cut = sample_many(ops.autocontrast_cutoff, 3)
    assert cut.min() > 7.0 and cut.max() <= 9.9 + 1e-9
    img = Image.fromarray(image)
    for op, cls in ((ops.color, ImageEnhance.Color), (ops.contrast, ImageEnhance.Contrast),
                    (ops.brightness, ImageEnhance.Brightness),
                    (ops.sharpness, ImageEnhance.Sharpness)):  # fmt: skip
        factor = ops.enhance_factor(3, np.random.default_rng(3))
        want = np.asarray(cls(img).enhance(factor))
        assert np.array_equal(np.asarray(same_draws(3, op, img)), want)
    c = ops.autocontrast_cutoff(3, np.random.default_rng(4))
    want = np.asarray(ImageOps.autocontrast(img, cutoff=c))
    assert np.array_equal(np.asarray(same_draws(4, ops.autocontrast_cut, img)), want)


def test_parameterless_ops() -> None:
    low = np.random.default_rng(0).integers(50, 101, (8, 8, 3)).astype(np.uint8)
    img = Image.fromarray(low)
    rng = np.random.default_rng(0)
    assert np.array_equal(np.asarray(ops.invert(img, 3, rng)), 255 - low)
    assert np.array_equal(np.asarray(ops.mirror(img, 3, rng)), low[:, ::-1])
    stretched = np.asarray(ops.autocontrast(img, 3, rng)).astype(float)
    lo, hi = low.min(axis=(0, 1)).astype(float), low.max(axis=(0, 1))  # per channel, cutoff 0
    assert np.abs(stretched - (low - lo) * 255 / (hi - lo)).max() <= 1
    assert np.array_equal(np.asarray(ops.equalize(img, 3, rng)), np.asarray(ImageOps.equalize(img)))


def test_op_lists() -> None:
    names = lambda ops_: [op.__name__ for op in ops_]  # noqa: E731
    enhance = {"color", "contrast", "brightness", "sharpness"}
    assert len(ops.AUGMIX_OPS) == 9 and not enhance & set(names(ops.AUGMIX_OPS))
    assert set(names(ops.AUGMIX_ALL_OPS)) == set(names(ops.AUGMIX_OPS)) | enhance
    assert len(ops.IPMIX_OPS) == 10 and {"mirror", "invert"} <= set(names(ops.IPMIX_OPS))
    assert "autocontrast" not in names(ops.IPMIX_OPS)
    assert len(ops.IPMIX_ALL_OPS) == 15 and "autocontrast_cut" in names(ops.IPMIX_ALL_OPS)


def test_random_op_is_uniform(image: np.ndarray) -> None:
    picked: list[int] = []

    def marker(k: int):
        def op(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
            picked.append(k)
            return img

        return op

    rng = np.random.default_rng(0)
    for _ in range(3000):
        out = ops.random_op(image, [marker(k) for k in range(3)], 3, rng)
    assert out.dtype == np.uint8 and out.shape == image.shape
    counts = np.bincount(picked, minlength=3) / 3000
    assert np.abs(counts - 1 / 3).max() < 0.04
