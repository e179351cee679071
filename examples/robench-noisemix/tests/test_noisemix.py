"""The example plugins against robench's own protocol checks, plus what makes them what they are.

Run from this folder: ``python -m pytest`` (the package needs to be importable: installed with
``pip install -e .``, or this folder on ``PYTHONPATH``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

import numpy as np
import pytest
import torch
from robench_noisemix import NoiseMix, noise_error

from robench.evaluation.base import EvalContext
from robench.testing import check_augmentation, check_metric, tiny_data


@pytest.mark.parametrize(
    "options", [{}, {"jsd": True}, {"noise": "uniform", "sigma": 0.3}, {"noise": "gaussian"}]
)
def test_noisemix_follows_the_protocol(options: dict) -> None:
    check_augmentation(NoiseMix, options=options)


@pytest.mark.parametrize("noise", ["gaussian", "uniform"])
def test_noisemix_blends_with_noise_of_std_sigma(noise: str) -> None:
    plugin = NoiseMix(10, sigma=0.1, noise=noise, alpha=1.0)
    clean = np.full((3, 32, 32), 0.5, dtype=np.float32)  # far from the clip at 0 and 1
    rng = np.random.default_rng(0)
    spread = np.array([(plugin.mix(clean, rng) - clean).std() for _ in range(400)])
    # std of the blend is weight * sigma, and a Beta(1, 1) weight averages 0.5
    assert spread.max() <= 0.1 * 1.05
    assert spread.mean() == pytest.approx(0.05, rel=0.1)


def test_noisemix_jsd_views_start_clean() -> None:
    image = (np.arange(32 * 32 * 3) % 256).astype(np.uint8).reshape(32, 32, 3)
    views = NoiseMix(10, jsd=True).sample(image, np.random.default_rng(3))
    assert views.shape == (3, 3, 32, 32)
    assert np.isin(views[0] * 255, np.arange(256)).all()  # the clean view: exact pixel values
    assert not np.array_equal(views[1], views[2])
    logits = [torch.zeros(2, 10), torch.zeros(2, 10), torch.zeros(2, 10)]
    assert NoiseMix(10, jsd=True).extra_loss(logits) == 0
    assert NoiseMix(10).extra_loss(logits) is None


def test_noise_error_follows_the_protocol() -> None:
    check_metric(noise_error, options={"sigma": 0.1})


class Brightness(torch.nn.Module):
    """Reads the class off the mean brightness of tiny_data: right on clean images."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centres = torch.tensor([50.0, 116.0, 183.0, 250.0]) / 255
        return -((x.mean(dim=(1, 2, 3))[:, None] - centres) ** 2)


def test_noise_error_grows_with_sigma() -> None:
    data, ctx = tiny_data(), EvalContext(batch_size=16, progress=False)
    errors = [noise_error(Brightness(), data, ctx, sigma=s).values["noise_error"] for s in (0, 1)]
    assert errors[0] == 0  # sigma 0: the clean error
    assert errors[1] >= 25  # clipping moves the brightness of the darkest and brightest classes


def test_installed_entry_points_reach_robench() -> None:
    try:
        dist = distribution("robench-noisemix")
    except PackageNotFoundError:
        pytest.skip("robench-noisemix is not installed (pip install -e .)")
    from robench.augment import AUGMENTATIONS
    from robench.evaluation import METRICS

    origin = f"robench-noisemix {dist.version}"
    assert AUGMENTATIONS.entry("noisemix").origin == origin
    assert METRICS.entry("noise_error").origin == origin
    check_augmentation("noisemix")
    check_metric("noise_error")
