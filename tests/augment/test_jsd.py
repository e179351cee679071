"""The JSD consistency term against timm's JsdCrossEntropy (= CE(clean) + 12 * JSD)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from timm.loss import JsdCrossEntropy

from robench.augment import create_augmentation
from robench.augment.jsd import jsd_consistency


def test_matches_timm() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3 * 8, 10, generator=g) * 3
    y = torch.randint(0, 10, (8,), generator=g)
    want = JsdCrossEntropy(num_splits=3, alpha=12, smoothing=0)(logits, y)
    views = list(logits.split(8))
    got = F.cross_entropy(views[0], y) + 12 * jsd_consistency(views)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_zero_for_equal_views_and_general_v() -> None:
    lv = torch.randn(4, 5)
    assert jsd_consistency([lv, lv, lv]).item() == pytest.approx(0, abs=1e-7)
    # two views, one-hot-like predictions on different classes: JSD = log 2 per image
    a = torch.tensor([[50.0, 0.0]])
    b = torch.tensor([[0.0, 50.0]])
    assert jsd_consistency([a, b]).item() == pytest.approx(math.log(2), rel=1e-4)


@pytest.mark.parametrize("name", ["augmix", "ipmix", "pixmix"])
def test_plugins_return_weighted_jsd(name: str, small_mixing: dict[str, int]) -> None:
    opts = {} if name == "augmix" else small_mixing
    views = list(torch.randn(3, 6, 10).unbind(0))
    plugin = create_augmentation(name, num_classes=10, jsd=True, jsd_weight=12.0, **opts)
    assert plugin.extra_loss(views).item() == pytest.approx(12 * jsd_consistency(views).item())
    plain = create_augmentation(name, num_classes=10, jsd=False, **opts)
    assert plain.extra_loss(views[:1]) is None
