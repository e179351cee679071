"""IPMix specifics: chain statistics, patches, quantisation modes, paper-vs-code options."""

from __future__ import annotations

import numpy as np
import pytest

from robench.augment import create_augmentation, ops
from robench.augment import ipmix as ipmix_module
from robench.augment.ipmix import patch_box, sample_chain
from robench.errors import ConfigError

N = 20000


@pytest.fixture
def plugin(small_mixing: dict[str, int]):
    return create_augmentation("ipmix", num_classes=10, **small_mixing)


def test_chain_statistics_match_the_code() -> None:
    rng = np.random.default_rng(0)
    patch, length = np.array([sample_chain(3, 0, rng) for _ in range(N)]).T
    assert abs((length == 0).mean() - 1 / 4) < 0.015  # identity chains (sd ~ 0.003)
    assert abs(patch.mean() - 1 / 2) < 0.015
    assert abs(length.mean() - 1.5) < 0.04
    assert set(length) == {0, 1, 2, 3}


def test_paper_chain_length_has_no_identity() -> None:
    rng = np.random.default_rng(0)
    length = np.array([sample_chain(3, 1, rng)[1] for _ in range(N)])
    assert set(length) == {1, 2, 3} and abs(length.mean() - 2) < 0.04


def test_patch_box_inside_non_square_images() -> None:
    rng = np.random.default_rng(0)
    for size in (4, 8, 16, 24):
        for _ in range(500):
            top, left, h, w = patch_box(32, 24, size, rng)  # 32 rows, 24 columns
            assert top >= 0 and top + h <= 32 and left >= 0 and left + w <= 24
            assert 2 <= h <= size and 2 <= w <= size


def test_patch_box_square_or_scar() -> None:
    rng = np.random.default_rng(1)
    boxes = np.array([patch_box(32, 32, 16, rng) for _ in range(4000)])
    top, left, h, w = boxes.T
    assert top.max() == 16 and left.max() == 16 and top.min() == 0 and left.min() == 0
    square = (h == 16) & (w == 16)
    assert abs(square.mean() - (0.5 + 0.5 / 15**2)) < 0.03  # scars can be 16 x 16 too
    assert h.min() == 2 and w.min() == 2 and h.max() == 16 and w.max() == 16


def test_patch_step_changes_one_box(plugin, image: np.ndarray) -> None:
    mixing = np.zeros_like(image)
    for seed in range(50):
        out = plugin.patch_step(image, image, mixing, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out.shape == image.shape
        rows, cols = np.nonzero((out != image).any(axis=-1))
        if rows.size:
            assert rows.max() - rows.min() < 32 and cols.max() - cols.min() < 32
            r0, c0, r1, c1 = rows.min(), cols.min(), rows.max(), cols.max()
            untouched = out.copy()
            untouched[r0 : r1 + 1, c0 : c1 + 1] = image[r0 : r1 + 1, c0 : c1 + 1]
            assert np.array_equal(untouched, image)


@pytest.mark.parametrize(("mode", "value"), [("faithful", 50), ("clamped", 255)])
def test_quantize_modes(mode: str, value: int, small_mixing, image, monkeypatch) -> None:
    def overshoot(x1, x2, beta, rng):
        return np.full_like(x1, 1.2)  # 306 after x 255: wraps to 50, or clamps to 255

    monkeypatch.setattr(ipmix_module, "IPMIX_MIXINGS", (overshoot,))
    plugin = create_augmentation("ipmix", num_classes=10, quantize=mode, **small_mixing)
    out = plugin.patch_step(image, image, image, np.random.default_rng(0))
    changed = out[(out != image).any(axis=-1)]
    assert changed.size and (changed == value).all()


def test_p_source_mixing_or_op(small_mixing, image, monkeypatch) -> None:
    def copy_source(x1, x2, beta, rng):
        return x2

    monkeypatch.setattr(ipmix_module, "IPMIX_MIXINGS", (copy_source,))
    black = np.zeros_like(image)
    fractions = {}
    for source in ("mixing", "mixing_or_op"):
        plugin = create_augmentation("ipmix", num_classes=10, p_source=source, **small_mixing)
        used_op = [
            plugin.patch_step(black, image, black, np.random.default_rng(s)).any()
            for s in range(400)
        ]
        fractions[source] = np.mean(used_op)
    assert fractions["mixing"] == 0  # the black state only ever gets the black picture
    assert abs(fractions["mixing_or_op"] - 0.5) < 0.08  # else from op(x)


def test_defaults_and_imagenet_settings(plugin, small_mixing, image) -> None:
    d = plugin.describe()
    assert (d["k"], d["t"], d["beta"], d["severity"]) == (3, 3, 3, 3)
    assert d["patch_sizes"] == [4, 8, 16, 32] and d["min_chain_length"] == 0
    assert (d["p_source"], d["quantize"], d["jsd"], d["jsd_weight"]) == (
        "mixing", "faithful", True, 12.0
    )  # fmt: skip
    assert plugin.ops == ops.IPMIX_OPS and plugin.num_views == 3
    big = create_augmentation(
        "ipmix", num_classes=10, image_size=64, patch_sizes=[4, 8, 16, 32, 64], all_ops=True,
        beta=4, severity=1, p_source="mixing_or_op", **small_mixing,
    )  # fmt: skip
    assert big.ops == ops.IPMIX_ALL_OPS
    big_image = np.tile(image, (2, 2, 1))
    out = big.sample(big_image, np.random.default_rng(0))
    assert out.shape == (3, 3, 64, 64) and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(
    "bad",
    [{"patch_sizes": [4, 64]}, {"quantize": "round"}, {"p_source": "fractal"}, {"k": 0},
     {"min_chain_length": 4}],
)  # fmt: skip
def test_bad_options(bad: dict, small_mixing) -> None:
    with pytest.raises(ConfigError):
        create_augmentation("ipmix", num_classes=10, **small_mixing, **bad)
