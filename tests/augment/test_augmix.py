"""AugMix specifics: chain depth distribution, ops per chain, op lists, options."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robench.augment import create_augmentation, ops
from robench.augment.augmix import chain_depth
from robench.augment.base import to_float_chw
from robench.errors import ConfigError


def test_depth_is_uniform_on_1_2_3() -> None:
    rng = np.random.default_rng(0)
    depths = np.array([chain_depth(-1, rng) for _ in range(9000)])
    freq = np.bincount(depths, minlength=4)[1:] / len(depths)
    assert set(depths) == {1, 2, 3}
    assert np.abs(freq - 1 / 3).max() < 0.02  # sd ~ 0.005
    assert {chain_depth(2, rng) for _ in range(20)} == {2}


def test_each_chain_applies_depth_ops(image: np.ndarray) -> None:
    plugin = create_augmentation("augmix", num_classes=10)
    applied: list[int] = []

    def counting(img: Image.Image, severity: float, rng: np.random.Generator) -> Image.Image:
        applied.append(1)
        return img

    plugin.ops = (counting,)
    counts = []
    for seed in range(300):
        applied.clear()
        plugin.chain(image, np.random.default_rng(seed))
        counts.append(len(applied))
    assert set(counts) == {1, 2, 3} and abs(np.mean(counts) - 2) < 0.15
    # identity ops: every chain equals x, so the convex mix is x itself
    view = plugin.view(image, None, np.random.default_rng(0))
    np.testing.assert_allclose(view, to_float_chw(image), atol=1e-6)


def test_defaults_and_all_ops() -> None:
    plugin = create_augmentation("augmix", num_classes=10)
    d = plugin.describe()
    assert (d["width"], d["depth"], d["severity"], d["alpha"]) == (3, -1, 3, 1.0)
    assert d["jsd"] and d["jsd_weight"] == 12 and plugin.num_views == 3
    assert plugin.ops == ops.AUGMIX_OPS
    assert create_augmentation("augmix", num_classes=10, all_ops=True).ops == ops.AUGMIX_ALL_OPS
    with pytest.raises(ConfigError):
        create_augmentation("augmix", num_classes=10, width=0)
