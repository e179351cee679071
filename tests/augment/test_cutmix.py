"""CutMix / Mixup through timm: soft targets, lambda = pasted area, determinism, odd batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robench.augment import create_augmentation


def constant_batch(b: int, h: int = 32, w: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is the constant (i + 1) / (b + 1): every pixel tells which image it came from."""
    values = (torch.arange(b, dtype=torch.float32) + 1) / (b + 1)
    return values[:, None, None, None].expand(b, 3, h, w).clone(), torch.arange(b)


@pytest.mark.parametrize(("h", "w"), [(32, 32), (24, 40)])
def test_cutmix_lambda_is_the_pasted_area(h: int, w: int) -> None:
    plugin = create_augmentation("cutmix", num_classes=10, padding=0)
    b = 8
    mixed_batches = 0
    for seed in range(200):
        x, y = constant_batch(b, h, w)
        out, targets = plugin.batch(x, y, np.random.default_rng(seed))
        assert targets.shape == (b, 10) and targets.dtype == torch.float32
        torch.testing.assert_close(targets.sum(1), torch.ones(b))
        lam = targets[torch.arange(b), y]
        partner = targets[torch.arange(b), y.flip(0)]
        own = (out == x[:, :1, :1, :1]).all(1).float().mean((1, 2))
        from_partner = (out == x.flip(0)[:, :1, :1, :1]).all(1).float().mean((1, 2))
        torch.testing.assert_close(own, lam)  # lambda = 1 - pasted area (corrected)
        torch.testing.assert_close(from_partner, partner)
        assert torch.allclose(lam, lam[0])  # one box per batch
        mixed_batches += bool(lam[0] < 1)
    assert 70 < mixed_batches < 130  # prob 0.5 per batch


def test_odd_batch_leaves_the_last_image_unmixed() -> None:
    plugin = create_augmentation("cutmix", num_classes=10, prob=1.0, padding=0)
    x, y = constant_batch(5)
    out, targets = plugin.batch(x, y, np.random.default_rng(3))
    assert torch.equal(targets[4], torch.nn.functional.one_hot(y[4], 10).float())
    assert torch.equal(out[4], x[4])
    assert (targets[:4].max(1).values < 1).all()  # the even prefix was mixed
    assert plugin.batch(x[:1], y[:1], np.random.default_rng(0))[1].sum() == 1


def test_deterministic_and_leaves_global_numpy_alone() -> None:
    plugin = create_augmentation("cutmix", num_classes=10)
    x = torch.rand(6, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = [plugin.batch(x.clone(), y, np.random.default_rng(s)) for s in range(10)]
    b = [plugin.batch(x.clone(), y, np.random.default_rng(s)) for s in range(10)]
    assert np.array_equal(np.random.get_state()[1], before)
    for (xa, ta), (xb, tb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ta, tb)
    assert not all(torch.equal(a[0][0], other[0]) for other in a[1:])


def test_mixup_blends_every_batch() -> None:
    plugin = create_augmentation("mixup", num_classes=10, padding=0)
    for seed in range(20):
        x, y = constant_batch(6)
        out, targets = plugin.batch(x, y, np.random.default_rng(seed))
        lam = targets[0, 0]
        assert 0 < lam < 1
        torch.testing.assert_close(targets.sum(1), torch.ones(6))
        torch.testing.assert_close(out, lam * x + (1 - lam) * x.flip(0))
