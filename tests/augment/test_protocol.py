"""Every built-in plugin honours the protocol: shapes, dtypes, ranges, determinism, labels."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from robench.augment import AUGMENTATIONS, create_augmentation
from robench.augment.base import to_float_chw
from robench.augment.crop_flip import flip_crop
from robench.errors import ConfigError

METHODS = ["baseline", "augmix", "pixmix", "ipmix", "cutmix", "mixup"]
LABEL_PRESERVING = ["baseline", "augmix", "pixmix", "ipmix"]


@pytest.fixture
def build(small_mixing: dict[str, int]):
    def make(name: str, **options):
        if name in ("pixmix", "ipmix"):
            options = small_mixing | options
        return create_augmentation(name, num_classes=10, **options)

    return make


def run(plugin, image: np.ndarray, seed: int):
    """The plugin's own path on one image (sample) or a batch of four (batch)."""
    rng = np.random.default_rng(seed)
    if plugin.has_sample:
        return plugin.sample(image, rng), None
    x = torch.from_numpy(np.stack([image, image[::-1], image[:, ::-1], 255 - image]))
    x = x.permute(0, 3, 1, 2).float() / 255
    return plugin.batch(x, torch.tensor([0, 1, 2, 3]), rng)


def test_all_registered() -> None:
    assert set(METHODS) <= set(AUGMENTATIONS.names())


@pytest.mark.parametrize("name", METHODS)
def test_outputs_and_determinism(name: str, build, image: np.ndarray) -> None:
    plugin = build(name)
    out, _ = run(plugin, image, 0)
    out = np.asarray(out)
    want = (plugin.num_views, 3, 32, 32) if plugin.has_sample else (plugin.num_views * 4, 3, 32, 32)
    assert out.shape == want and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    same = [np.asarray(run(plugin, image, 0)[0]) for _ in range(2)]
    assert all(np.array_equal(out, s) for s in same)
    differ = [not np.array_equal(out, np.asarray(run(plugin, image, s)[0])) for s in range(1, 6)]
    assert all(differ) if plugin.has_sample else any(differ)
    json.dumps(plugin.describe())
    assert plugin.describe()["num_views"] == plugin.num_views
    assert pickle.loads(pickle.dumps(plugin)).describe() == plugin.describe()


@pytest.mark.parametrize("name", LABEL_PRESERVING)
def test_labels_never_change(name: str, build, image: np.ndarray) -> None:
    plugin = build(name)
    # the batch stage gets the sample stage's views, or the raw images when there is none
    x = torch.rand((plugin.num_views if plugin.has_sample else 1) * 4, 3, 32, 32)
    y = torch.tensor([3, 1, 4, 1])
    assert torch.equal(plugin.batch(x, y, np.random.default_rng(0))[1], y)
    if plugin.has_sample:
        assert not plugin.has_batch  # a per-sample method has no stage that could touch labels


@pytest.mark.parametrize("name", ["augmix", "ipmix", "pixmix"])
def test_jsd_views(name: str, build, image: np.ndarray) -> None:
    plugin = build(name, jsd=True)
    views = plugin.sample(image, np.random.default_rng(4))
    assert plugin.num_views == 3 and views.shape[0] == 3
    clean = to_float_chw(flip_crop(image, np.random.default_rng(4)))  # drawn first
    assert np.array_equal(views[0], clean)
    assert not np.array_equal(views[1], views[2])
    single = build(name, jsd=False)
    assert single.num_views == 1 and single.sample(image, np.random.default_rng(4)).shape[0] == 1


@pytest.mark.parametrize("name", METHODS)
def test_unknown_option_is_a_config_error(name: str, build) -> None:
    with pytest.raises(ConfigError, match="nonsense"):
        build(name, nonsense=1)


@pytest.mark.parametrize("name", ["pixmix", "ipmix"])
def test_one_mixing_picture_per_sample_shared_by_its_views(
    name: str, build, image: np.ndarray
) -> None:
    plugin = build(name, jsd=True)
    assert len(plugin.mixing) == 50
    drawn: list[np.ndarray] = []
    got: list[np.ndarray] = []
    sample_picture, view = plugin.mixing.sample, plugin.view

    class Recorder:
        def sample(self, rng: np.random.Generator) -> np.ndarray:
            drawn.append(sample_picture(rng))
            return drawn[-1]

    def recording_view(x, mixing, rng):
        got.append(mixing)
        return view(x, mixing, rng)

    plugin.mixing, plugin.view = Recorder(), recording_view
    plugin.sample(image, np.random.default_rng(0))
    assert len(drawn) == 1 and len(got) == 2
    assert got[0] is drawn[0] and got[1] is drawn[0]
    assert drawn[0].shape == (32, 32, 3) and drawn[0].dtype == np.uint8
