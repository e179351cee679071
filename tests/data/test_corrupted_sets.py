"""Generated CIFAR-10-C / -P sets: official layout, per-image seeds, cache, and the readers."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from robench.data import corrupted_sets as S
from robench.data.corruptions import corrupt_batch, corruption_seed_rngs
from robench.data.datasets import DataIdentity, ImageData
from robench.data.perturbations import FRAMES, perturb_batch
from robench.errors import ConfigError, DataError

NAMES = ["gaussian_noise", "zoom_blur", "frost"]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return np.arange(7) % 3


@pytest.fixture(scope="module")
def generated(tmp_path_factory, images, labels) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("c")
    manifest = S.generate_cifar_c(
        images, labels, root, corruptions=NAMES, seed=5, workers=1, progress=False
    )
    return root / "CIFAR-10-C", manifest


def test_official_layout(generated, images, labels):
    folder, manifest = generated
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{n}.npy" for n in NAMES] + ["labels.npy", "manifest.json"]
    )
    for name in NAMES:
        arr = np.load(folder / f"{name}.npy")
        assert arr.dtype == np.uint8 and arr.shape == (5 * 7, 32, 32, 3)
    lab = np.load(folder / "labels.npy")
    assert lab.dtype == np.uint8  # as the published labels.npy
    np.testing.assert_array_equal(lab, np.tile(labels, 5))
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert manifest["seed"] == 5 and manifest["corruptions"] == NAMES
    assert manifest["n_per_severity"] == 7 and manifest["severities"] == [1, 2, 3, 4, 5]
    assert manifest["constants"] == "cifar" and len(manifest["constants_hash"]) == 16
    assert manifest["source"]["count"] == 7 and "numpy" in manifest["versions"]
    assert not list(folder.glob(".*.tmp"))


def test_rows_are_severity_major_with_per_image_seeds(generated, images):
    folder, _ = generated
    frost = np.load(folder / "frost.npy")
    for severity in (1, 4):
        # any slice can be regenerated on its own: image 5 alone, from its derived seed
        alone = corrupt_batch(
            images[5:6], "frost", severity, corruption_seed_rngs(5, "frost", severity, [5])
        )
        np.testing.assert_array_equal(frost[(severity - 1) * 7 + 5], alone[0])
    whole = corrupt_batch(images, "frost", 2, corruption_seed_rngs(5, "frost", 2, range(7)))
    np.testing.assert_array_equal(frost[7:14], whole)


def test_workers_do_not_change_the_output(tmp_path, images, labels, generated):
    folder, _ = generated
    S.generate_cifar_c(
        images, labels, tmp_path, corruptions=NAMES[:2], seed=5, workers=2, progress=False
    )
    for name in NAMES[:2]:
        np.testing.assert_array_equal(
            np.load(tmp_path / "CIFAR-10-C" / f"{name}.npy"), np.load(folder / f"{name}.npy")
        )


def test_subset_severities_and_image_data(tmp_path, images, labels):
    data = ImageData(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=torch.from_numpy(labels),
        classes=["a", "b", "c"],
        identity=DataIdentity("toy", "test", 7, "abc", "memory"),
    )
    manifest = S.generate_cifar_c(
        data, None, tmp_path, corruptions=["contrast"], severities=(2, 5), n_per_severity=4,
        workers=1, progress=False, dataset_name="CIFAR-100-C",
    )  # fmt: skip
    assert manifest["source"]["identity"]["name"] == "toy"
    arr = np.load(tmp_path / "CIFAR-100-C" / "contrast.npy")
    assert arr.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(
        arr[4:],
        corrupt_batch(images[:4], "contrast", 5, corruption_seed_rngs(0, "contrast", 5, range(4))),
    )
    got, lab = S.load_cifar_c(tmp_path / "CIFAR-100-C", "contrast", severity=5)
    np.testing.assert_array_equal(got, arr[4:])
    np.testing.assert_array_equal(lab, labels[:4])
    with pytest.raises(ConfigError):
        S.load_cifar_c(tmp_path / "CIFAR-100-C", "contrast", severity=1)


def test_bad_arguments(tmp_path, images, labels):
    with pytest.raises(ConfigError):
        S.generate_cifar_c(images, labels, tmp_path, corruptions=["rain"], progress=False)
    with pytest.raises(ConfigError):
        S.generate_cifar_c(images, labels, tmp_path, severities=(0,), progress=False)
    with pytest.raises(ConfigError):
        S.generate_cifar_c(images, labels, tmp_path, n_per_severity=8, progress=False)
    with pytest.raises(DataError):
        S.generate_cifar_c(images, labels[:3], tmp_path, progress=False)
    with pytest.raises(DataError):
        S.generate_cifar_c(images.astype(float), labels, tmp_path, progress=False)


def test_failed_generation_leaves_no_file(tmp_path, images, labels, monkeypatch):
    real = S.corrupt_batch

    def failing(batch, name, *args, **kwargs):
        if name == "zoom_blur":
            raise RuntimeError("boom")
        return real(batch, name, *args, **kwargs)

    monkeypatch.setattr(S, "corrupt_batch", failing)
    with pytest.raises(RuntimeError):
        S.generate_cifar_c(images, labels, tmp_path, corruptions=NAMES, workers=1, progress=False)
    folder = tmp_path / "CIFAR-10-C"
    # no temporary file, no manifest; the finished file is recorded for a resumed generation
    assert sorted(p.name for p in folder.iterdir()) == ["gaussian_noise.npy", "progress.json"]

    # an interrupted generation continues where it was: the finished file is not made again,
    # and the result equals a generation that ran straight through
    monkeypatch.undo()
    first = folder / "gaussian_noise.npy"
    stamp = first.stat().st_mtime_ns
    resumed = S.generate_cifar_c(
        images, labels, tmp_path, corruptions=NAMES, workers=1, progress=False
    )
    assert first.stat().st_mtime_ns == stamp
    assert not (folder / "progress.json").exists()
    straight = S.generate_cifar_c(
        images, labels, tmp_path / "straight", corruptions=NAMES, workers=1, progress=False
    )
    assert resumed["files"] == straight["files"]  # same sizes and sha256 checksums


def test_a_flipped_byte_in_the_cache_is_detected_and_rebuilt(tmp_path, images, labels):
    kwargs = {"corruptions": ["fog"], "workers": 1, "progress": False, "cache_root": tmp_path}
    folder = S.ensure_cifar_c(images, labels, **kwargs)
    path = folder / "fog.npy"
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[-1] ^= 0xFF  # same size, one pixel changed
    path.write_bytes(bytes(damaged))
    assert S.ensure_cifar_c(images, labels, **kwargs) == folder
    assert path.read_bytes() == good


# --------------------------------------------------------------------------- official files


@pytest.fixture
def official(tmp_path) -> Path:
    """A miniature Zenodo folder: 5 severities x 6 images, no manifest."""
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    imgs = np.arange(30 * 32 * 32 * 3, dtype=np.uint64).astype(np.uint8).reshape(30, 32, 32, 3)
    np.save(folder / "fog.npy", imgs)
    np.save(folder / "labels.npy", np.tile(np.arange(6, dtype=np.uint8), 5))
    return folder


def test_load_official_folder(official):
    imgs, lab = S.load_cifar_c(official, "fog", severity=3, expected_labels=np.arange(6))
    np.testing.assert_array_equal(imgs, np.load(official / "fog.npy")[12:18])
    assert lab.dtype == np.int64 and list(lab) == list(range(6))
    every, lab_all = S.load_cifar_c(official, "fog")
    assert every.shape == (30, 32, 32, 3) and len(lab_all) == 30


def test_load_checks(official):
    with pytest.raises(DataError, match="does not match"):
        S.load_cifar_c(official, "fog", expected_labels=np.arange(6)[::-1])
    with pytest.raises(DataError, match="6 images per severity"):
        S.load_cifar_c(official, "fog", expected_labels=np.arange(5))
    with pytest.raises(DataError, match="does not exist"):
        S.load_cifar_c(official, "snow")
    data = (official / "fog.npy").read_bytes()
    (official / "fog.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        S.load_cifar_c(official, "fog")
    np.save(official / "fog.npy", np.zeros((30, 32, 32), np.uint8))
    with pytest.raises(DataError, match="uint8"):
        S.load_cifar_c(official, "fog")
    np.save(official / "fog.npy", np.zeros((29, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="multiple"):
        S.load_cifar_c(official, "fog")
    np.save(official / "fog.npy", np.zeros((30, 32, 32, 3), np.uint8))
    np.save(official / "labels.npy", np.zeros(25, np.uint8))
    with pytest.raises(DataError, match="labels"):
        S.load_cifar_c(official, "fog")


# --------------------------------------------------------------------------- cache


def test_ensure_reuses_only_a_matching_cache(tmp_path, images, labels, monkeypatch):
    kwargs = dict(corruptions=["contrast"], workers=1, progress=False, cache_root=tmp_path)
    folder = S.ensure_cifar_c(images, labels, **kwargs)
    assert folder.parent.parent == tmp_path and (folder / "manifest.json").is_file()
    calls = []
    real = S.generate_cifar_c
    monkeypatch.setattr(S, "generate_cifar_c", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert S.ensure_cifar_c(images, labels, **kwargs) == folder and not calls  # reused
    other = S.ensure_cifar_c(images, labels, seed=1, **kwargs)
    assert other != folder and len(calls) == 1  # another seed, another key
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    assert S.ensure_cifar_c(changed, labels, **kwargs) not in (folder, other)
    (folder / "contrast.npy").write_bytes(b"")  # damaged: regenerated in place
    assert S.ensure_cifar_c(images, labels, **kwargs) == folder and len(calls) == 3
    assert np.load(folder / "contrast.npy").shape == (35, 32, 32, 3)


@pytest.mark.parametrize("kind", ["c", "p"])
def test_processes_wanting_one_set_make_it_once(kind, tmp_path, images, labels, monkeypatch, capfd):
    """Two at once (torchrun ranks, parallel sweep runs; here two threads, whose separate
    opens of the lock file exclude each other as processes' do): the second waits on the
    cache lock while the first generates, then reads what it made."""
    calls = []
    if kind == "c":
        real, name = S.generate_cifar_c, "generate_cifar_c"
        kwargs = dict(corruptions=["contrast"], workers=1, cache_root=tmp_path)

        def ensure(progress: bool):
            return S.ensure_cifar_c(images, labels, progress=progress, **kwargs)
    else:
        real, name = S.generate_cifar_p, "generate_cifar_p"
        kwargs = dict(perturbations=["brightness"], workers=1, cache_root=tmp_path)

        def ensure(progress: bool):
            return S.ensure_cifar_p(images, progress=progress, **kwargs)

    def slow(*args, **kw):
        calls.append(1)
        time.sleep(1.0)  # the other thread arrives meanwhile
        return real(*args, **kw)

    monkeypatch.setattr(S, name, slow)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(ensure, False)
        time.sleep(0.3)
        second = pool.submit(ensure, True)
        folders = [first.result(), second.result()]
    assert folders[0] == folders[1] and len(calls) == 1
    assert "waiting for another process to finish generating" in capfd.readouterr().err


def test_ensure_default_cache_dir(tmp_path, images, labels, monkeypatch):
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path))
    folder = S.ensure_cifar_c(images, labels, corruptions=["brightness"], workers=1, progress=False)
    assert folder.is_relative_to(tmp_path / "corruptions")


# --------------------------------------------------------------------------- CIFAR-10-P


def test_generate_and_load_cifar_p(tmp_path, images):
    names = ["gaussian_noise", "translate"]
    manifest = S.generate_cifar_p(images, tmp_path, perturbations=names, seed=2, n_images=3,
                                  workers=1, progress=False)  # fmt: skip
    folder = tmp_path / "CIFAR-10-P"
    assert manifest["frames"] == {"gaussian_noise": 31, "translate": 16}
    for name in names:
        seqs = S.load_cifar_p(folder, name)
        assert seqs.shape == (3, FRAMES[name], 32, 32, 3) and seqs.dtype == np.uint8
    seqs = S.load_cifar_p(folder, "gaussian_noise")
    again = perturb_batch(images[1:2], "gaussian_noise", S.p_seed_rngs(2, "gaussian_noise", 1, [1]))
    np.testing.assert_array_equal(seqs[1], again[0])
    np.testing.assert_array_equal(seqs[:, 0], images[:3])  # frame 0 is the clean image
    np.save(folder / "translate.npy", np.zeros((3, 31, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="frames"):
        S.load_cifar_p(folder, "translate")
    with pytest.raises(DataError, match="does not exist"):
        S.load_cifar_p(folder, "rotate")


def test_cifar_p_difficulty_files(tmp_path, images):
    assert S.p_file_name("shot_noise", 2) == "shot_noise_2.npy"
    with pytest.raises(ConfigError):
        S.p_file_name("rotate", 2)
    S.generate_cifar_p(images, tmp_path, perturbations=["shot_noise"], difficulty=3, n_images=2,
                       workers=1, progress=False)  # fmt: skip
    assert (tmp_path / "CIFAR-10-P" / "shot_noise_3.npy").is_file()
    assert S.load_cifar_p(tmp_path / "CIFAR-10-P", "shot_noise", difficulty=3).shape[:2] == (2, 31)


def test_ensure_cifar_p(tmp_path, images):
    kwargs = dict(perturbations=["brightness"], n_images=2, workers=1, progress=False,
                  cache_root=tmp_path)  # fmt: skip
    folder = S.ensure_cifar_p(images, **kwargs)
    stamp = (folder / "brightness.npy").stat().st_mtime_ns
    assert S.ensure_cifar_p(images, **kwargs) == folder
    assert (folder / "brightness.npy").stat().st_mtime_ns == stamp


def test_bench_corrupt_smoke():
    from robench.bench.corrupt import bench_corrupt

    df = bench_corrupt(4, corruptions=["contrast", "speckle_noise"], severities=(1,), workers=1)
    assert list(df.corruption) == ["contrast", "speckle_noise"]
    assert (df.images_per_s_1core > 0).all() and df.attrs["projected_full_set_s"] > 0
    assert df.benchmark.tolist() == [True, False]


def test_a_file_system_without_locks_still_fills_the_cache(tmp_path, images, labels, monkeypatch):
    """Some network mounts refuse flock (ENOLCK): the set is made without the lock."""
    import errno
    import fcntl

    def refuse(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    kwargs = dict(corruptions=["contrast"], workers=1, progress=False, cache_root=tmp_path)
    folder = S.ensure_cifar_c(images, labels, **kwargs)
    assert (folder / "contrast.npy").is_file()
