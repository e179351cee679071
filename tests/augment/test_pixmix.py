"""PixMix specifics: rounds 0..k, what is mixed in, clamping after every round."""

from __future__ import annotations

import numpy as np
import pytest

from robench.augment import create_augmentation, ops
from robench.augment import pixmix as pixmix_module
from robench.augment.base import to_float_chw


@pytest.fixture
def plugin(small_mixing: dict[str, int]):
    return create_augmentation("pixmix", num_classes=10, **small_mixing)


def test_defaults(plugin) -> None:
    d = plugin.describe()
    assert (d["k"], d["beta"], d["severity"], d["all_ops"], d["jsd"]) == (4, 3, 3, False, False)
    assert plugin.num_views == 1 and plugin.ops == ops.AUGMIX_OPS
    assert plugin.extra_loss([]) is None


def test_rounds_and_mixed_in_sources(plugin, image: np.ndarray, monkeypatch) -> None:
    picture = np.full_like(image, 77)
    seen: list[bool] = []

    def record(x1, x2, beta, rng):
        seen.append(np.array_equal(x2, to_float_chw(picture)))
        return x1

    monkeypatch.setattr(pixmix_module, "PIXMIX_MIXINGS", (record,))
    rounds = []
    for seed in range(1000):
        before = len(seen)
        plugin.view(image, picture, np.random.default_rng(seed))
        rounds.append(len(seen) - before)
    freq = np.bincount(rounds, minlength=5) / len(rounds)
    assert len(freq) == 5 and np.abs(freq - 0.2).max() < 0.05  # uniform on {0, ..., 4}
    assert abs(np.mean(seen) - 0.5) < 0.05  # the mixing picture, else an augmented copy of x


def test_clamped_after_every_round(plugin, image: np.ndarray, monkeypatch) -> None:
    outputs = []

    def overshoot(x1, x2, beta, rng):
        assert x1.min() >= 0 and x1.max() <= 1  # the previous round was clamped
        return x1 * 3 - 1

    monkeypatch.setattr(pixmix_module, "PIXMIX_MIXINGS", (overshoot,))
    for seed in range(30):
        outputs.append(plugin.view(image, image, np.random.default_rng(seed)))
    out = np.stack(outputs)
    assert out.min() == 0 and out.max() == 1
