"""OOD sets: the synthetic generators' defining statistics, textures, folders, official sets."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.ndimage
import torchvision
from PIL import Image

from robench.data.ood import blobs, gaussian, load_ood_set, rademacher, set_label, textures
from robench.errors import DataError


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_gaussian_is_clipped_normal_mean_half_std_quarter() -> None:
    x = gaussian(400, 32, _rng())
    assert x.shape == (400, 3, 32, 32) and x.dtype == np.float32
    assert x.min() == 0 and x.max() == 1
    # 0.5 + 0.25 N(0, 1) clipped at +-2 sigma: P(clipped low) = Phi(-2), std = 0.25 * 0.9594.
    assert x.mean() == pytest.approx(0.5, abs=0.002)
    assert (x == 0).mean() == pytest.approx(0.02275, abs=0.002)
    assert (x == 1).mean() == pytest.approx(0.02275, abs=0.002)
    assert x.std() == pytest.approx(0.25 * 0.9594, abs=0.002)


def test_rademacher_is_zero_or_one_with_equal_odds() -> None:
    x = rademacher(200, 32, _rng())
    assert x.shape == (200, 3, 32, 32) and x.dtype == np.float32
    assert set(np.unique(x)) == {0.0, 1.0}
    assert x.mean() == pytest.approx(0.5, abs=0.005)


def test_blobs_are_thresholded_3d_blurred_bernoulli() -> None:
    x = blobs(300, 32, _rng(2))
    assert x.shape == (300, 3, 32, 32) and x.dtype == np.float32
    kept = x[x > 0]
    assert kept.min() >= 0.75 and x.max() <= 1
    assert (x > 0).mean() == pytest.approx(0.22, abs=0.03)  # OE's CIFAR/test.py: about 22 % survive
    # The blur runs over colour as a third axis (OE's multichannel=False): recompute it.
    draws = _rng(2).binomial(1, 0.7, size=(300, 32, 32, 3)).astype(np.float64)
    blurred = scipy.ndimage.gaussian_filter(draws, sigma=(0, 1.5, 1.5, 1.5), mode="nearest")
    expected = np.where(blurred < 0.75, 0, blurred).transpose(0, 3, 1, 2)
    near_threshold = np.abs(blurred.transpose(0, 3, 1, 2) - 0.75) < 1e-5
    np.testing.assert_allclose(x[~near_threshold], expected[~near_threshold], atol=1e-5)


def test_generators_are_seeded() -> None:
    for generate in (gaussian, rademacher, blobs, textures):
        a, b, c = generate(4, 16, _rng(1)), generate(4, 16, _rng(1)), generate(4, 16, _rng(2))
        assert np.array_equal(a, b) and not np.array_equal(a, c), generate.__name__


def test_textures_are_grey_uint8_patches() -> None:
    x = textures(50, 32, _rng())
    assert x.shape == (50, 3, 32, 32) and x.dtype == np.uint8
    assert np.array_equal(x[:, 0], x[:, 1]) and np.array_equal(x[:, 0], x[:, 2])
    assert x.reshape(50, -1).std(axis=1).min() > 2  # every patch has texture


def test_load_ood_set_names_sizes_and_unknown() -> None:
    for name in ("gaussian", "rademacher", "blobs", "textures"):
        ood = load_ood_set(name, n=6, image_size=24, seed=3)
        assert ood.name == name and tuple(ood.images.shape) == (6, 3, 24, 24)
    with pytest.raises(DataError, match="unknown OOD set"):
        load_ood_set("places", n=6, image_size=32, seed=0)


def test_image_folder_resize_crop_and_subset(tmp_path: Path) -> None:
    folder = tmp_path / "LSUN-Resize"
    (folder / "sub").mkdir(parents=True)
    # 64x32 pictures: left half black, right half white; the centre crop shows both halves.
    picture = np.zeros((32, 64, 3), dtype=np.uint8)
    picture[:, 32:] = 255
    for i in range(6):
        Image.fromarray(picture).save(folder / ("sub" if i % 2 else "") / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    ood = load_ood_set(f"imagefolder:{folder}", n=4, image_size=32, seed=0)
    assert ood.name == "lsun_resize" and ood.images.dtype.is_floating_point is False
    assert tuple(ood.images.shape) == (4, 3, 32, 32)
    assert (ood.images[:, :, :, :15] == 0).all() and (ood.images[:, :, :, 17:] == 255).all()
    relative = load_ood_set(
        "imagefolder:LSUN-Resize", n=10, image_size=16, seed=0, data_root=tmp_path
    )
    assert tuple(relative.images.shape) == (6, 3, 16, 16)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        load_ood_set(f"imagefolder:{empty}", n=4, image_size=32, seed=0)
    with pytest.raises(DataError, match="no such folder"):
        load_ood_set(f"imagefolder:{tmp_path / 'missing'}", n=4, image_size=32, seed=0)


def test_svhn_from_the_official_mat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"test_32x32\.mat"):
        load_ood_set(f"svhn:{tmp_path}", n=4, image_size=32, seed=0)
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3, 10), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": pixels, "y": np.ones((10, 1))})
    # torchvision checks the official file's md5; this stand-in cannot pass that check.
    monkeypatch.setattr(torchvision.datasets.SVHN, "_check_integrity", lambda self: True)
    ood = load_ood_set("svhn", n=4, image_size=32, seed=0, data_root=tmp_path)
    assert ood.name == "svhn" and tuple(ood.images.shape) == (4, 3, 32, 32)
    all_images = pixels.transpose(3, 2, 0, 1)
    assert all(any(np.array_equal(img, ref) for ref in all_images) for img in ood.images.numpy())
    with pytest.raises(DataError, match="needs a root"):
        load_ood_set("svhn", n=4, image_size=32, seed=0)


def test_other_cifar_from_the_official_python_files(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.random.default_rng(0).integers(0, 256, (8, 3072), dtype=np.uint8)
    with open(folder / "test", "wb") as f:
        pickle.dump({"data": data, "fine_labels": list(range(8))}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{k}" for k in range(100)]}, f)
    ood = load_ood_set(f"cifar100:{tmp_path}", n=5, image_size=16, seed=0)
    assert ood.name == "cifar100" and tuple(ood.images.shape) == (5, 3, 16, 16)
    with pytest.raises(DataError):
        load_ood_set("cifar10", n=5, image_size=32, seed=0, data_root=tmp_path)


def test_set_label() -> None:
    assert set_label("Places365 (test)") == "places365_test"
    assert set_label("--") == "set"
