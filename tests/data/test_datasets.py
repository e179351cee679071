"""Loaders read the official formats exactly: tests write small files in those formats and read
them back pixel for pixel, then check identities, subsets and every user-facing error."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from robench.data import DataIdentity, ImageData, check_same_classes, load_dataset
from robench.data.folders import ANNOTATIONS
from robench.errors import DataError
from robench.io import hash_arrays

REAL_CIFAR10_JPEG = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10-jpeg"
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def load(spec: str, split: str = "test", **kwargs: Any) -> ImageData:
    return load_dataset(spec, split, progress=False, **kwargs)


def data_error(spec: str, split: str = "test", **kwargs: Any) -> str:
    """The message of the DataError that loading raises; it must be one line."""
    with pytest.raises(DataError) as info:
        load(spec, split, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- CIFAR pickles ------------------------------------------------------------------------------


def dump_pickle(path: Path, obj: object, style: str) -> None:
    """``py2``: protocol 2 with numpy 1 module names, as in the official Python 2 files."""
    if style == "py2":
        blob = pickle.dumps(obj, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    else:
        blob = pickle.dumps(obj, protocol=5)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)


def cifar_rows(images_hwc: np.ndarray) -> np.ndarray:
    """The official row layout, spelled out: 1024 red, then 1024 green, then 1024 blue bytes."""
    planes = [images_hwc[..., c].reshape(len(images_hwc), 1024) for c in range(3)]
    return np.concatenate(planes, axis=1)


def random_images(rng: np.random.Generator, n: int, h: int = 32, w: int = 32) -> np.ndarray:
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def write_cifar10(root: Path, style: str = "py2", per_batch: int = 3) -> dict[str, tuple]:
    """Five train batches, a test batch and batches.meta; returns the expected HWC images."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    expected: dict[str, tuple] = {}
    for split, files in (
        ("train", [f"data_batch_{i}" for i in range(1, 6)]),
        ("test", ["test_batch"]),
    ):
        all_images, all_labels = [], []
        for file in files:
            images = random_images(rng, per_batch)
            labels = rng.integers(0, 10, size=per_batch).tolist()
            batch = {"batch_label": file, "data": cifar_rows(images), "labels": labels}
            dump_pickle(folder / file, batch, style)
            all_images.append(images)
            all_labels += labels
        expected[split] = (np.concatenate(all_images), np.array(all_labels))
    dump_pickle(folder / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_vis": 3072}, style)
    return expected


@pytest.mark.parametrize("style", ["py2", "protocol5"])
def test_cifar10_reads_official_layout_pixel_for_pixel(tmp_path: Path, style: str) -> None:
    expected = write_cifar10(tmp_path, style)
    for split in ("train", "test"):
        data = load("cifar10", split, root=tmp_path)
        images_hwc, labels = expected[split]
        assert data.images.dtype.is_floating_point is False and data.images.is_contiguous()
        assert data.images.shape == (len(labels), 3, 32, 32)
        assert np.array_equal(data.images.numpy(), images_hwc.transpose(0, 3, 1, 2))
        assert np.array_equal(data.labels.numpy(), labels) and data.labels.dtype.itemsize == 8
        assert data.classes == CIFAR10_CLASSES
        assert data.identity == DataIdentity(
            name="cifar10",
            split=split,
            count=len(labels),
            content_hash=hash_arrays(data.images.numpy(), data.labels.numpy()),
            source=str(tmp_path / "cifar-10-batches-py"),
            subset="all",
        )


def test_cifar100_reads_fine_labels_and_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    names = [f"class{i:02d}" for i in range(100)]
    folder = tmp_path / "cifar-100-python"
    written = {}
    for split in ("train", "test"):
        images = random_images(rng, 4)
        fine = [99, 0, 42, 7] if split == "train" else [5, 5, 98, 1]
        entry = {"data": cifar_rows(images), "fine_labels": fine, "coarse_labels": [0, 1, 2, 3]}
        dump_pickle(folder / split, entry, "py2")
        written[split] = (images, fine)
    dump_pickle(folder / "meta", {"fine_label_names": names, "coarse_label_names": ["x"]}, "py2")
    for split, (images, fine) in written.items():
        data = load("cifar100", split, root=tmp_path)
        assert np.array_equal(data.images.numpy(), images.transpose(0, 3, 1, 2))
        assert data.labels.tolist() == fine
        assert data.classes == names and data.num_classes == 100
        assert data.identity.name == "cifar100"


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.mkdir, (str(marker),))

    dump_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", {"data": Payload()}, "protocol5")
    message = data_error("cifar10", root=tmp_path)
    assert "test_batch" in message and "refusing" in message
    assert not marker.exists()


def test_cifar_labels_beyond_the_class_names_are_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}
    dump_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", batch, "py2")
    assert "label 10 is outside 0..9" in data_error("cifar10", root=tmp_path)


def test_missing_cifar_lists_every_path_tried_and_how_to_provide_it(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    message = data_error("cifar10", "train", root=root)
    folder = root / "cifar-10-batches-py"
    for file in [*(f"data_batch_{i}" for i in range(1, 6)), "batches.meta"]:
        assert str(folder / file) in message
    for hint in ("--data-root", "ROBENCH_DATA", "download = true", "imagefolder:<path>"):
        assert hint in message
    assert str(root / "cifar-100-python" / "test") in data_error("cifar100", root=root)


def test_download_goes_through_torchvision_and_offline_failure_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.utils as tv_utils
    from torchvision.datasets import CIFAR10

    calls = []

    def fake_download(url: str, root: str, filename: str, md5: str) -> None:
        calls.append((url, filename, md5))
        write_cifar10(Path(root))

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    assert len(load("cifar10", root=tmp_path / "fresh", download=True)) == 3
    assert calls == [(CIFAR10.url, CIFAR10.filename, CIFAR10.tgz_md5)]
    load("cifar10", "train", root=tmp_path / "fresh", download=True)
    assert len(calls) == 1  # files present: nothing fetched

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("<urlopen error [Errno -3]\nTemporary failure in name resolution>")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    message = data_error("cifar100", root=tmp_path / "other", download=True)
    assert message.startswith(f"could not download cifar100 into {tmp_path / 'other'}")
    assert "name resolution" in message


def test_data_root_comes_from_env_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cifar10(tmp_path / "env-root")
    write_cifar10(tmp_path / "cwd" / "data")
    monkeypatch.setenv("ROBENCH_DATA", str(tmp_path / "env-root"))
    assert load("cifar10").identity.source == str(tmp_path / "env-root" / "cifar-10-batches-py")
    monkeypatch.delenv("ROBENCH_DATA")
    monkeypatch.chdir(tmp_path / "cwd")
    assert load("cifar10").identity.source == str(tmp_path / "cwd" / "data" / "cifar-10-batches-py")


# --- npz ----------------------------------------------------------------------------------------


def indexed_npz(path: Path, counts: list[int]) -> None:
    """Images whose pixels all equal their index, so a subset reveals which indices it kept."""
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = labels[np.random.default_rng(5).permutation(len(labels))]
    x = np.broadcast_to(
        np.arange(len(labels), dtype=np.uint8)[:, None, None, None], (len(labels), 4, 4, 3)
    )
    np.savez(path, x=x, y=labels, classes=np.array([f"c{i}" for i in range(len(counts))]))


def test_npz_both_layouts_and_split_keys(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    hwc = {split: random_images(rng, 5, 6, 8) for split in ("train", "test")}
    labels = {"train": np.array([0, 1, 2, 1, 0]), "test": np.array([2, 2, 1, 0, 0])}
    np.savez(
        tmp_path / "hwc.npz",
        x_train=hwc["train"],
        y_train=labels["train"],
        x_test=hwc["test"],
        y_test=labels["test"],
        classes=np.array(["a", "b", "c"]),
    )
    np.savez(
        tmp_path / "chw.npz", x=hwc["test"].transpose(0, 3, 1, 2), y=labels["test"].astype(np.int32)
    )
    for split in ("train", "test"):
        data = load(f"npz:{tmp_path / 'hwc.npz'}", split)
        assert data.images.shape == (5, 3, 6, 8) and data.images.is_contiguous()
        assert np.array_equal(data.images.numpy(), hwc[split].transpose(0, 3, 1, 2))
        assert data.labels.tolist() == labels[split].tolist()
        assert data.classes == ["a", "b", "c"]
        assert data.identity.name == "npz:hwc"
    chw = load(f"npz:{tmp_path / 'chw.npz'}", "train")
    assert np.array_equal(chw.images.numpy(), hwc["test"].transpose(0, 3, 1, 2))
    assert chw.classes == ["0", "1", "2"] and chw.labels.dtype.itemsize == 8


def test_content_hash_is_stable_and_follows_content(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x, y = random_images(rng, 6, 4, 4), np.array([0, 1, 0, 1, 0, 1])
    np.savez(tmp_path / "a.npz", x=x, y=y)
    first = load(f"npz:{tmp_path / 'a.npz'}").identity.content_hash
    assert load(f"npz:{tmp_path / 'a.npz'}").identity.content_hash == first
    x[2, 1, 3, 0] ^= 1
    np.savez(tmp_path / "b.npz", x=x, y=y)
    assert load(f"npz:{tmp_path / 'b.npz'}").identity.content_hash != first
    x[2, 1, 3, 0] ^= 1
    np.savez(tmp_path / "c.npz", x=x, y=y[::-1].copy())
    assert load(f"npz:{tmp_path / 'c.npz'}").identity.content_hash != first


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        (
            {
                "x": np.zeros((2, 4, 4, 3), np.uint8),
                "y": np.array([0, 3]),
                "classes": np.array(["a", "b", "c"]),
            },
            "label 3 is outside 0..2",
        ),
        ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.array([0, -1])}, "label -1 is outside"),
        ({"x": np.zeros((2, 4, 4, 3), np.float32), "y": np.array([0, 1])}, "store pixels as uint8"),
        (
            {"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, 1])},
            "expected (N, H, W, 3) or (N, 3, H, W)",
        ),
        (
            {"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.array([0, 1, 1])},
            "must hold 2 integer labels",
        ),
        ({"x": np.zeros((0, 4, 4, 3), np.uint8), "y": np.zeros(0, np.int64)}, "holds no images"),
        (
            {"x_train": np.zeros((2, 4, 4, 3), np.uint8), "y_train": np.array([0, 1])},
            "neither x_test/y_test nor x/y",
        ),
    ],
)
def test_npz_problems_are_named(tmp_path: Path, arrays: dict, expected: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    assert expected in data_error(f"npz:{tmp_path / 'bad.npz'}")


def test_npz_that_is_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    assert str(tmp_path / "junk.npz") in data_error(f"npz:{tmp_path / 'junk.npz'}")
    np.save(tmp_path / "single.npy", np.zeros((2, 4, 4, 3), np.uint8))
    assert "np.savez" in data_error(f"npz:{tmp_path / 'single.npy'}")


# --- subsets ------------------------------------------------------------------------------------


def test_per_class_subset_is_seeded_sorted_and_counts_right(tmp_path: Path) -> None:
    indexed_npz(tmp_path / "idx.npz", [10, 10, 3])
    spec = f"npz:{tmp_path / 'idx.npz'}"
    full = load(spec)
    sub = load(spec, per_class=4, subset_seed=7)
    kept = sub.images[:, 0, 0, 0].numpy().astype(np.int64)
    # The documented rule: first per_class of each class in default_rng(seed).permutation(N).
    order = np.random.default_rng(7).permutation(len(full))
    shuffled = full.labels.numpy()[order]
    expected = np.sort(np.concatenate([order[shuffled == c][:4] for c in range(3)]))
    assert kept.tolist() == expected.tolist()
    assert np.array_equal(sub.labels.numpy(), full.labels.numpy()[kept])
    assert np.bincount(sub.labels.numpy()).tolist() == [4, 4, 3]  # a small class keeps all it has
    assert sub.identity.subset == "4 per class (seed 7)" and sub.identity.count == 11
    assert full.identity.subset == "all" and sub.identity.content_hash != full.identity.content_hash
    again = load(spec, per_class=4, subset_seed=7)
    assert torch_equal(again, sub) and again.identity == sub.identity
    assert not torch_equal(load(spec, per_class=4, subset_seed=8), sub)
    bigger = load(spec, per_class=6, subset_seed=7).images[:, 0, 0, 0].numpy()
    assert set(kept) <= set(bigger.tolist())


def torch_equal(a: ImageData, b: ImageData) -> bool:
    return a.images.shape == b.images.shape and bool((a.images == b.images).all())


def test_negative_per_class_is_refused(tmp_path: Path) -> None:
    indexed_npz(tmp_path / "idx.npz", [2, 2])
    assert "per_class" in data_error(f"npz:{tmp_path / 'idx.npz'}", per_class=-1)


# --- imagefolder --------------------------------------------------------------------------------


def write_png_folder(folder: Path, images: dict[str, list[np.ndarray]]) -> None:
    for name, class_images in images.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i, pixels in enumerate(class_images):
            Image.fromarray(pixels).save(folder / name / f"{i:03d}.png")


def png_set(seed: int, h: int = 6, w: int = 8) -> dict[str, list[np.ndarray]]:
    """Three classes, written out of alphabetical order; non-square to catch H/W swaps."""
    rng = np.random.default_rng(seed)
    return {
        name: list(random_images(rng, n, h, w)) for name, n in (("cat", 3), ("ant", 2), ("bee", 4))
    }


def expected_chw(images: dict[str, list[np.ndarray]]) -> np.ndarray:
    return np.stack([im.transpose(2, 0, 1) for name in sorted(images) for im in images[name]])


def test_imagefolder_with_split_folders_reads_pngs_exactly(tmp_path: Path) -> None:
    root = tmp_path / "mini-set"
    sets = {"train": png_set(0), "test": png_set(1)}
    for split, images in sets.items():
        write_png_folder(root / split, images)
    # A grey image is converted to RGB; stray files and hidden folders are not images.
    Image.fromarray(np.full((6, 8), 77, np.uint8)).save(root / "test" / "bee" / "grey.png")
    (root / "test" / "ant" / "notes.txt").write_text("not an image")
    (root / "test" / ".ipynb_checkpoints").mkdir()
    (root / "test" / "cat" / ".cache").mkdir()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "test" / "cat" / ".cache" / "x.png")
    for split, images in sets.items():
        data = load(f"imagefolder:{root}", split)
        want = expected_chw(images)
        if split == "test":
            want = np.insert(want, 2 + 4, np.full((3, 6, 8), 77, np.uint8), axis=0)  # bee/grey.png
        assert data.classes == ["ant", "bee", "cat"]
        assert np.array_equal(data.images.numpy(), want)
        assert data.labels.tolist() == [0] * 2 + [1] * (4 + (split == "test")) + [2] * 3
        assert data.identity.name == "mini-set" and data.identity.source == str(root / split)
        assert data.images.is_contiguous() and data.image_size == 8


def test_imagefolder_without_split_folders_serves_every_split(tmp_path: Path) -> None:
    images = png_set(2)
    write_png_folder(tmp_path / "flat", images)
    for split in ("train", "test"):
        data = load(f"imagefolder:{tmp_path / 'flat'}", split)
        assert np.array_equal(data.images.numpy(), expected_chw(images))
        assert data.identity.name == "flat" and data.identity.split == split


def test_imagefolder_decoding_is_cached_until_a_file_changes(tmp_path: Path, monkeypatch) -> None:
    """The second load reads the cached array (no image is opened); an edited file, a damaged
    cache file and another subset are decoded afresh."""
    from robench.data import datasets

    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    images = png_set(5)
    write_png_folder(tmp_path / "pets", images)
    spec = f"imagefolder:{tmp_path / 'pets'}"
    first = load(spec, "train")
    opened: list[str] = []
    read = datasets._read_image
    monkeypatch.setattr(datasets, "_read_image", lambda path: opened.append(path) or read(path))
    again = load(spec, "train")
    assert opened == [] and torch_equal(first, again)
    assert again.identity == first.identity
    (cached,) = (tmp_path / "cache" / "decoded").glob("*/images.npy")

    load(spec, "train", per_class=1)  # other files, another entry
    assert len(set(opened)) == 3 and len(list(cached.parent.parent.iterdir())) == 2

    opened.clear()
    cached.write_bytes(cached.read_bytes()[:100])  # a truncated cache file
    assert torch_equal(load(spec, "train"), first) and len(set(opened)) == 9
    opened.clear()
    assert torch_equal(load(spec, "train"), first) and opened == []  # rewritten whole

    edited = tmp_path / "pets" / "bee" / "000.png"
    images["bee"][0] = 255 - images["bee"][0]
    Image.fromarray(images["bee"][0]).save(edited)
    os.utime(edited, ns=(1, 1))  # the same size is possible; the modification time differs
    changed = load(spec, "train")
    assert len(set(opened)) == 9 and np.array_equal(changed.images.numpy(), expected_chw(images))
    assert changed.identity.content_hash != first.identity.content_hash


def test_imagefolder_with_only_a_train_folder_has_no_test_split(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "half" / "train", png_set(3))
    assert "no test/ or val/ split folder" in data_error(f"imagefolder:{tmp_path / 'half'}", "test")


def test_imagefolder_subset_equals_the_same_subset_of_arrays(tmp_path: Path) -> None:
    """Imagefolder subsets before decoding; the result must match subsetting decoded arrays."""
    images = png_set(4)
    write_png_folder(tmp_path / "same", images)
    labels = np.repeat([0, 1, 2], [len(images[n]) for n in sorted(images)])
    np.savez(tmp_path / "same.npz", x=expected_chw(images), y=labels)
    folder = load(f"imagefolder:{tmp_path / 'same'}", per_class=2, subset_seed=3)
    arrays = load(f"npz:{tmp_path / 'same.npz'}", per_class=2, subset_seed=3)
    assert torch_equal(folder, arrays) and folder.labels.tolist() == arrays.labels.tolist()
    assert folder.identity.content_hash == arrays.identity.content_hash
    assert folder.identity.subset == "2 per class (seed 3)"


def test_relative_paths_are_tried_in_cwd_then_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_png_folder(tmp_path / "root" / "rel", png_set(5))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert load("imagefolder:rel", root=tmp_path / "root").identity.name == "rel"
    message = data_error("imagefolder:absent", root=tmp_path / "root")
    assert str(tmp_path / "cwd" / "absent") in message
    assert str(tmp_path / "root" / "absent") in message
    assert "ROBENCH_DATA" in message


def test_corrupt_image_is_named_first_in_file_order(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "broken", png_set(6))
    for name in ("cat", "bee"):
        (tmp_path / "broken" / name / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    bad = tmp_path / "broken" / "bee" / "001.png"
    assert f"cannot decode image {bad}" in data_error(f"imagefolder:{tmp_path / 'broken'}")


def test_image_of_another_size_is_named_with_its_size(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "mixed", png_set(7))
    odd = tmp_path / "mixed" / "bee" / "002.png"
    Image.fromarray(np.zeros((5, 9, 3), np.uint8)).save(odd)
    message = data_error(f"imagefolder:{tmp_path / 'mixed'}")
    assert f"{odd} is 9x5" in message and "is 8x6" in message


def test_empty_folders_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "no class sub-folders" in data_error(f"imagefolder:{tmp_path / 'empty'}")
    (tmp_path / "empty" / "ant").mkdir()
    (tmp_path / "empty" / "ant" / "readme.txt").write_text("no images here")
    assert "no images" in data_error(f"imagefolder:{tmp_path / 'empty'}")


# --- specs, splits, class checks -----------------------------------------------------------------


@pytest.mark.parametrize("spec", ["cifar11", "imagefolder:", "npz", "folder:x", "cifar10:x"])
def test_unknown_spec_lists_the_accepted_forms(spec: str) -> None:
    message = data_error(spec)
    assert "cifar10, cifar100, imagefolder:<path>, npz:<path>" in message


def test_unknown_split_is_refused() -> None:
    assert "use one of train, test" in data_error("cifar10", "val")


def test_check_same_classes_names_the_difference(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "a", png_set(8))
    write_png_folder(
        tmp_path / "b",
        {"ant": [np.zeros((6, 8, 3), np.uint8)], "dog": [np.zeros((6, 8, 3), np.uint8)]},
    )
    a, b = load(f"imagefolder:{tmp_path / 'a'}", "train"), load(f"imagefolder:{tmp_path / 'b'}")
    check_same_classes(a, load(f"imagefolder:{tmp_path / 'a'}"))
    with pytest.raises(DataError, match=r"only in train: \[bee, cat\]; only in test: \[dog\]"):
        check_same_classes(a, b)


# --- the real data at hand ----------------------------------------------------------------------


@pytest.mark.skipif(not REAL_CIFAR10_JPEG.is_dir(), reason=f"{REAL_CIFAR10_JPEG} is not present")
def test_real_cifar10_jpeg_test_subset() -> None:
    data = load(f"imagefolder:{REAL_CIFAR10_JPEG}", per_class=5)
    assert data.classes == CIFAR10_CLASSES
    assert data.images.shape == (50, 3, 32, 32)
    assert np.bincount(data.labels.numpy()).tolist() == [5] * 10
    assert data.identity.name == "cifar10-jpeg" and data.identity.subset == "5 per class (seed 0)"


def write_tiny_imagenet(root: Path, seed: int = 0) -> dict[str, dict[str, list[np.ndarray]]]:
    """Tiny-ImageNet as it ships: train/<wnid>/images/ (+ a boxes file), val/images/ with
    val_annotations.txt (file, wnid, box; not in class order), an unlabelled test/images/."""
    rng = np.random.default_rng(seed)
    wnids = ["n02", "n01", "n03"]
    train = {w: list(random_images(rng, 2, 6, 6)) for w in wnids}
    for wnid, images in train.items():
        (root / "train" / wnid / "images").mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("box lines\n")
        for i, pixels in enumerate(images):
            Image.fromarray(pixels).save(root / "train" / wnid / "images" / f"{wnid}_{i}.png")
    val: dict[str, list[np.ndarray]] = {w: [] for w in wnids}
    lines = []
    (root / "val" / "images").mkdir(parents=True)
    for k, wnid in enumerate(["n03", "n01", "n02", "n01", "n03", "n02"]):
        pixels = random_images(rng, 1, 6, 6)[0]
        Image.fromarray(pixels).save(root / "val" / "images" / f"val_{k}.png")
        val[wnid].append(pixels)
        lines.append(f"val_{k}.png\t{wnid}\t0\t0\t5\t5")
    (root / "val" / ANNOTATIONS).write_text("\n".join(lines) + "\n")
    (root / "test" / "images").mkdir(parents=True)
    Image.fromarray(random_images(rng, 1, 6, 6)[0]).save(root / "test" / "images" / "test_0.png")
    return {"train": train, "test": val}


def test_tiny_imagenet_layout_reads_as_shipped(tmp_path: Path) -> None:
    """The test split is val/ through its annotations (test/ has no labels), in the order the
    same images sorted into class folders give; streamed the same way."""
    root = tmp_path / "tiny-imagenet-200"
    sets = write_tiny_imagenet(root)
    for split, images in sets.items():
        data = load(f"imagefolder:{root}", split)
        assert data.classes == ["n01", "n02", "n03"]
        assert np.array_equal(data.images.numpy(), expected_chw(images))
        assert data.labels.tolist() == [0, 0, 1, 1, 2, 2]
        streamed = load(f"imagefolder:{root}", split, image_size=6, crop_pct=1.0)
        assert streamed.labels.tolist() == data.labels.tolist() and streamed.on_disk
    assert load(f"imagefolder:{root}", "test").identity.source == str(root / "val")
    # the same images reorganised into val/<wnid>/ read identically
    flat = tmp_path / "reorganised"
    write_png_folder(flat / "test", sets["test"])
    assert np.array_equal(load(f"imagefolder:{flat}").images, load(f"imagefolder:{root}").images)


def test_tiny_imagenet_annotation_problems_are_named(tmp_path: Path) -> None:
    root = tmp_path / "t"
    write_tiny_imagenet(root)
    listing = root / "val" / ANNOTATIONS
    good = listing.read_text()
    listing.write_text(good + "val_9.png\tn01\t0\t0\t5\t5\n")
    assert "lists 1 image(s) not in" in data_error(f"imagefolder:{root}") and "val_9.png" in (
        data_error(f"imagefolder:{root}")
    )
    listing.write_text(good + "just-a-file-name\n")
    assert "line 7 is not 'file<TAB>class" in data_error(f"imagefolder:{root}")
    listing.write_text("\n")
    assert "lists no images" in data_error(f"imagefolder:{root}")
