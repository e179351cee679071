"""Image classification data sets, loaded once into memory as uint8 tensors.

Names: ``cifar10``, ``cifar100`` (official torchvision layout under the data root),
``imagefolder:<path>`` (class sub-folders, inside ``train/`` and ``test/`` (or ``val/``) split
folders or not) and ``npz:<path>``. Relative paths are looked up in the working directory, then
the data root.
Any other ``<name>`` or ``<name>:<arg>`` is looked up in :data:`DATASETS`, the data-set plugins
that installed packages declare (see docs/extending.md).

Everything is decoded up front into one uint8 array: CIFAR-sized sets fit in memory many times
over, and augmentation workers then index a tensor instead of re-decoding files every epoch.
The exception is an image folder read with ``image_size > 0`` (ImageNet scale): it stays on disk
as a :class:`~robench.data.folders.FolderImages`, decoded per image with the ImageNet transforms.
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from robench.console import bar
from robench.data.folders import (
    ANNOTATIONS,
    FolderImages,
    eval_resize,
    files_hash,
    list_annotated,
    list_classes,
    name_list,
)
from robench.errors import DataError, RobenchError
from robench.io import atomic_path, cache_dir, cache_lock, hash_arrays, hash_text
from robench.registry import Registry

SPLITS = ("train", "test")
#: split folder names tried in order (ImageNet ships its test split as val/)
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val")}
#: the built-in spec forms and what they read (``robench list`` shows them)
BUILTIN_DATASETS = {
    "cifar10": "CIFAR-10, official python-version files under the data root",
    "cifar100": "CIFAR-100, official python-version files under the data root",
    "imagefolder:<path>": "class sub-folders of images, optionally inside train/ and test/ "
    "(or val/; Tiny-ImageNet's val/ with val_annotations.txt too); data.image_size > 0 streams "
    "them from disk",
    "npz:<path>": "arrays x_train, y_train, x_test, y_test (or x, y), optional classes",
}
SPEC_FORMS = ", ".join(BUILTIN_DATASETS)
BUILTIN_PREFIXES = {form.partition(":")[0] for form in BUILTIN_DATASETS}
PROVIDE_HINT = (
    "point --data-root or ROBENCH_DATA at the folder that holds it, set download = true when "
    "online (cifar10/cifar100 only), or load a local copy as imagefolder:<path> or npz:<path>"
)
_DECODE_CHUNK = 256  # files per thread-pool task: amortises scheduling over tiny images
_DECODE_THREADS = min(4, os.cpu_count() or 1)


#: A data-set plugin: ``factory(arg, split, root=data_root)`` -> uint8 images (N, H, W, 3),
#: integer labels (N,) and class names. ``arg`` is what follows ``<name>:`` in the data-set name
#: (None for a bare ``<name>``). robench subsets, hashes and records it like a built-in set.
DatasetFactory = Callable[..., tuple[np.ndarray, np.ndarray, list[str]]]

#: data-set plugins by spec prefix; the built-in forms are handled by :func:`load_dataset` itself
DATASETS: Registry[DatasetFactory] = Registry("data set")


@dataclass(frozen=True)
class DataIdentity:
    """What a result was computed on: recorded in every metrics.json."""

    name: str  # e.g. "cifar10", "cifar10-jpeg" (an imagefolder's folder name), "npz:mine"
    split: str  # "train" or "test"
    count: int  # number of images after subsetting
    content_hash: str  # sha256 (16 hex) of images and labels after subsetting
    source: str  # the path it was read from
    subset: str = "all"  # e.g. "500 per class (seed 0)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ImageData:
    """A split: uint8 images (N, 3, H, W), int64 labels (N,), class names.

    ``images`` is a tensor in memory, or a :class:`FolderImages` that decodes from disk on access
    (indexing it gives tensors; evaluation streams it in batches).
    """

    images: torch.Tensor | FolderImages
    labels: torch.Tensor
    classes: list[str]
    identity: DataIdentity

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def on_disk(self) -> bool:
        """Decoded per image from files (an image folder read at a fixed ``image_size``)."""
        return isinstance(self.images, FolderImages)

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_tensors(
        cls,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray | Sequence[int],
        *,
        name: str,
        classes: Sequence[str] | None = None,
    ) -> ImageData:
        """A test set from arrays in memory, identified like a loaded one (its content hash).

        ``images``: (N, 3, H, W) or (N, H, W, 3), uint8 0..255 or float in [0, 1] (rounded to
        uint8, the form every metric reads). ``classes`` default to "0", "1", ... up to the
        largest label.
        """
        x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
        x = np.asarray(x)
        if x.dtype.kind == "f":
            if not ((x >= 0) & (x <= 1)).all():  # NaN fails too
                raise DataError(f"{name}: float images must lie in [0, 1] (RobustBench's input)")
            x = np.rint(x * 255)
        elif x.dtype != np.uint8:
            raise DataError(
                f"{name}: images must be uint8 0..255 or float in [0, 1], not {x.dtype}"
            )
        x = np.require(_channels_first(x, name), np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])
        y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels
        y = np.ascontiguousarray(_labels(np.asarray(y), len(x), f"{name} labels"))
        names = _class_names(None if classes is None else list(classes), y, f"{name} labels")
        identity = DataIdentity(
            name=name,
            split="test",
            count=len(y),
            content_hash=hash_arrays(x, y),
            source="tensors in memory",
        )
        return cls(torch.from_numpy(x), torch.from_numpy(y), names, identity)


def load_dataset(
    spec: str,
    split: str,
    *,
    root: str | Path | None = None,
    per_class: int = 0,
    subset_seed: int = 0,
    progress: bool = True,
    download: bool = False,
    image_size: int = 0,
    crop_pct: float = 0.875,
    workers: int = 0,
) -> ImageData:
    """Load one split of ``spec`` into memory, optionally keeping ``per_class`` images per class.

    ``root`` (else ``$ROBENCH_DATA``, else ``./data``) holds the CIFAR folders and is the second
    place relative ``imagefolder:``/``npz:`` paths are looked up. ``download`` only applies to
    cifar10/cifar100; the local formats have nothing to fetch.

    ``image_size > 0`` (image folders only) keeps the images on disk: the training split is
    decoded with RandomResizedCrop(image_size) + flip per sample, the test split with
    Resize(floor(image_size / crop_pct)) + CenterCrop(image_size), ``workers`` DataLoader workers
    decoding the evaluation batches (see :mod:`robench.data.folders`).
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if per_class < 0:
        raise DataError(f"per_class must be 0 (all images) or positive, got {per_class}")
    if image_size < 0:
        raise DataError(f"image_size must be 0 (decode into memory) or positive, got {image_size}")
    data_root, origin = _data_root(root)
    kind, sep, arg = spec.partition(":")
    if image_size and not (kind == "imagefolder" and arg):
        raise DataError(
            f"image_size = {image_size} streams an image folder from disk; {spec!r} is not "
            "imagefolder:<path>: set data.image_size = 0 for it"
        )
    if image_size:
        base = _find_path(arg, data_root, origin, spec, want_dir=True)
        resize = eval_resize(image_size, crop_pct)
        return _folder_on_disk(base, split, per_class, subset_seed, image_size, resize, workers)
    if kind == "imagefolder" and arg:
        base = _find_path(arg, data_root, origin, spec, want_dir=True)
        name = base.name
        files, labels, classes, source = _list_imagefolder(base, split)
        # Subset before decoding: a 5-per-class smoke test should not decode 50k files.
        keep = _subset_indices(labels, len(classes), per_class, subset_seed)
        if keep is not None:
            files, labels = [files[i] for i in keep], labels[keep]
        images = _cached_decode(files, source, f"decoding {name}/{split}", progress)
    else:
        if not sep and spec in _CIFAR:
            name = spec
            images, labels, classes, source = _load_cifar(
                _CIFAR[spec], split, data_root, origin, download
            )
        elif kind == "npz" and arg:
            source = _find_path(arg, data_root, origin, spec, want_dir=False)
            name = f"npz:{source.stem}"
            images, labels, classes = _load_npz(source, split)
        elif kind not in BUILTIN_PREFIXES:
            name = spec
            plugin_arg = arg if sep else None
            images, labels, classes, source = _load_plugin(spec, kind, plugin_arg, split, data_root)
        else:
            raise DataError(f"unknown data set {spec!r}: use one of {_spec_forms()}")
        keep = _subset_indices(labels, len(classes), per_class, subset_seed)
        if keep is not None:
            images, labels = images[keep], labels[keep]
    images = np.require(images, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    identity = DataIdentity(
        name=name,
        split=split,
        count=len(labels),
        content_hash=hash_arrays(images, labels),
        source=str(source),
        subset=f"{per_class} per class (seed {subset_seed})" if per_class else "all",
    )
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels), list(classes), identity)


def _folder_on_disk(
    base: Path,
    split: str,
    per_class: int,
    subset_seed: int,
    image_size: int,
    resize: int,
    workers: int,
) -> ImageData:
    """An image folder split as a :class:`FolderImages`: listed and hashed, not decoded."""
    files, labels, classes, source = _list_imagefolder(base, split)
    keep = _subset_indices(labels, len(classes), per_class, subset_seed)
    if keep is not None:
        files, labels = [files[i] for i in keep], labels[keep]
    transform = (
        f"RandomResizedCrop({image_size}) + flip"
        if split == "train"
        else f"Resize({resize}) + CenterCrop({image_size})"
    )
    identity = DataIdentity(
        name=base.name,
        split=split,
        count=len(labels),
        content_hash=files_hash(files, labels, source, f"{transform}\n{classes}"),
        source=f"{source} (on disk, {transform})",
        subset=f"{per_class} per class (seed {subset_seed})" if per_class else "all",
    )
    images = FolderImages(files, image_size, resize, workers)
    return ImageData(images, torch.from_numpy(labels), classes, identity)


def _spec_forms() -> str:
    plugins = ", ".join(f"{n}[:<arg>]" for n in DATASETS.names())
    return f"{SPEC_FORMS}, {plugins} (plugins)" if plugins else SPEC_FORMS


def check_same_classes(train: ImageData, test: ImageData) -> None:
    """Refuse two splits whose label numbers would mean different classes."""
    if train.classes == test.classes:
        return
    only_train = [c for c in train.classes if c not in test.classes]
    only_test = [c for c in test.classes if c not in train.classes]
    if only_train or only_test:
        detail = f"only in {train.identity.split}: {name_list(only_train)}; "
        detail += f"only in {test.identity.split}: {name_list(only_test)}"
    else:
        detail = "same names in a different order"
    raise DataError(
        f"{train.identity.name} {train.identity.split} ({train.num_classes} classes) and "
        f"{test.identity.name} {test.identity.split} ({test.num_classes} classes) have different "
        f"classes ({detail}): give both splits the same class sub-folders"
    )


def _one_line(error: BaseException) -> str:
    """An exception's text on one line, so that our messages stay one line."""
    return " ".join(str(error).split()) or type(error).__name__


def _data_root(root: str | Path | None) -> tuple[Path, str]:
    """The data root and where it came from (for error messages)."""
    if root is not None:
        return Path(root).expanduser().absolute(), "the root argument / --data-root"
    env = os.environ.get("ROBENCH_DATA")
    if env:
        return Path(env).expanduser().absolute(), "ROBENCH_DATA"
    return Path("data").absolute(), "default ./data"


def _find_path(arg: str, data_root: Path, origin: str, spec: str, *, want_dir: bool) -> Path:
    """``arg`` as given (absolute, or relative to the working directory), else in the data root."""
    given = Path(arg).expanduser()
    tried = list(dict.fromkeys([given.absolute(), data_root / given]))  # once if absolute
    for path in tried:
        if path.is_dir() if want_dir else path.is_file():
            return path.resolve()
    what = "folder" if want_dir else "file"
    raise DataError(
        f"{spec}: no such {what}; tried {', '.join(map(str, tried))} "
        f"(data root {data_root} from {origin}); give an absolute path, one relative to the "
        f"working directory, or {PROVIDE_HINT}"
    )


def _subset_indices(
    labels: np.ndarray, num_classes: int, per_class: int, seed: int
) -> np.ndarray | None:
    """Sorted indices of the first ``per_class`` images of each class in a seeded permutation.

    Sorted so that the subset keeps the source order; a class with fewer images keeps them all.
    The same seed with a larger ``per_class`` gives a superset.
    """
    if per_class == 0:
        return None
    order = np.random.default_rng(seed).permutation(len(labels))
    shuffled = labels[order]
    keep = [order[shuffled == c][:per_class] for c in range(num_classes)]
    return np.sort(np.concatenate(keep))


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise DataError(
            f"{where}: label {bad} is outside 0..{num_classes - 1} ({num_classes} class names)"
        )


# --- plugins (installed packages, robench.datasets entry points) -------------------------------


def _load_plugin(
    spec: str, plugin: str, arg: str | None, split: str, data_root: Path
) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Call data-set plugin ``plugin`` and check what it returns, as :func:`_load_npz` does."""
    if plugin in DATASETS.failed:  # a plugin meant to provide it but is broken or conflicting
        raise DataError(DATASETS.unknown_message(plugin))
    if plugin not in DATASETS:
        raise DataError(f"unknown data set {spec!r}: use one of {_spec_forms()}")
    entry = DATASETS.entry(plugin)
    where = f"data set plugin {plugin!r} ({entry.origin})"
    try:
        out = entry.factory(arg, split, root=data_root)
    except RobenchError:
        raise
    except Exception as e:  # a plugin bug: name the plugin; --debug shows the traceback
        raise DataError(f"{where} failed: {type(e).__name__}: {_one_line(e)}") from e
    if not (isinstance(out, tuple) and len(out) == 3):
        raise DataError(f"{where} must return (images, labels, classes), got {type(out).__name__}")
    x, y, classes = np.asarray(out[0]), np.asarray(out[1]), out[2]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or len(x) == 0:
        raise DataError(
            f"{where} returned images of dtype {x.dtype} and shape {x.shape}: "
            "expected uint8 (N, H, W, 3) with N > 0"
        )
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where} must return {len(x)} integer labels, got {y.dtype} {y.shape}")
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise DataError(f"{where} must return the class names as a list of str")
    y = y.astype(np.int64)
    _check_labels(y, len(classes), where)
    return x.transpose(0, 3, 1, 2), y, classes, f"{plugin} plugin ({entry.origin})"


# --- CIFAR (official python-version pickles) ------------------------------------------------


@dataclass(frozen=True)
class _CifarLayout:
    name: str
    folder: str
    files: dict[str, tuple[str, ...]]
    meta: str
    label_key: str
    names_key: str


_CIFAR = {
    "cifar10": _CifarLayout(
        name="cifar10",
        folder="cifar-10-batches-py",
        files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        meta="batches.meta",
        label_key="labels",
        names_key="label_names",
    ),
    "cifar100": _CifarLayout(
        name="cifar100",
        folder="cifar-100-python",
        files={"train": ("train",), "test": ("test",)},
        meta="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
    ),
}

# The only globals a CIFAR pickle needs (a dict of numpy arrays, lists and strings), under their
# numpy 1 and numpy 2 module names. Anything else is refused: a pickle can run arbitrary code.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing {module}.{name}, not part of a CIFAR file")
        return getattr(importlib.import_module(module), name)


def _read_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            # latin1 reads the Python 2 strings inside the official files, as torchvision does.
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except Exception as e:  # a damaged pickle fails in many ways; all mean "not a CIFAR file"
        raise DataError(
            f"cannot read {path}: {_one_line(e)}; expected an official CIFAR python-version file"
        ) from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a CIFAR dict")
    return obj


def _load_cifar(
    layout: _CifarLayout, split: str, data_root: Path, origin: str, download: bool
) -> tuple[np.ndarray, np.ndarray, list[str], Path]:
    folder = data_root / layout.folder
    needed = [folder / f for f in (*layout.files[split], layout.meta)]
    if download and not all(p.is_file() for p in needed):
        _download_cifar(layout, data_root)
    missing = [p for p in needed if not p.is_file()]
    if missing:
        raise DataError(
            f"{layout.name} {split} data not found: tried {', '.join(map(str, missing))} "
            f"(data root {data_root} from {origin}); expected the official python-version files "
            f"in {layout.folder}/; {PROVIDE_HINT}"
        )
    meta = _read_pickle(folder / layout.meta)
    classes = meta.get(layout.names_key)
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{folder / layout.meta} has no list of class names {layout.names_key!r}")
    images, labels = [], []
    for file in needed[:-1]:
        entry = _read_pickle(file)
        data, file_labels = entry.get("data"), entry.get(layout.label_key)
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
            raise DataError(f"{file}: 'data' is not a uint8 (N, 3072) array")
        if data.shape[1] != 3 * 32 * 32 or file_labels is None or len(file_labels) != len(data):
            raise DataError(
                f"{file}: expected 'data' (N, 3072) and {layout.label_key!r} with N entries, got "
                f"{data.shape} and {None if file_labels is None else len(file_labels)} labels"
            )
        file_labels = np.asarray(file_labels, dtype=np.int64)
        _check_labels(file_labels, len(classes), str(file))
        # Rows are 3072 bytes: the red plane, then green, then blue, each 32x32 row-major.
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(file_labels)
    return np.concatenate(images), np.concatenate(labels), classes, folder


def _download_cifar(layout: _CifarLayout, data_root: Path) -> None:
    """Fetch and unpack the official archive with torchvision's downloader (checks its md5)."""
    from torchvision.datasets import CIFAR10, CIFAR100
    from torchvision.datasets.utils import download_and_extract_archive

    source = CIFAR10 if layout.name == "cifar10" else CIFAR100
    try:
        download_and_extract_archive(
            source.url, str(data_root), filename=source.filename, md5=source.tgz_md5
        )
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad md5 a RuntimeError
        raise DataError(
            f"could not download {layout.name} into {data_root}: {_one_line(e)}; "
            f"copy the official files there by hand, or load a local copy as imagefolder:<path>"
        ) from e


# --- npz ---------------------------------------------------------------------------------------


def _load_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path} is a single .npy array: save x and y together with np.savez")
        with archive:
            keys = set(archive.files)
            if {f"x_{split}", f"y_{split}"} <= keys:
                x_key, y_key = f"x_{split}", f"y_{split}"
            elif {"x", "y"} <= keys:
                x_key, y_key = "x", "y"
            else:
                raise DataError(
                    f"{path} has neither x_{split}/y_{split} nor x/y arrays "
                    f"(it holds: {', '.join(sorted(keys)) or 'nothing'})"
                )
            x, y = archive[x_key], archive[y_key]
            names = archive["classes"] if "classes" in keys else None
    except (OSError, ValueError, zipfile.BadZipFile) as e:  # ValueError: object arrays
        raise DataError(
            f"cannot read {path} as .npz: {_one_line(e)}; save plain arrays with np.savez"
        ) from e
    if x.dtype != np.uint8:
        raise DataError(f"{path}:{x_key} has dtype {x.dtype}: store pixels as uint8 0..255")
    x = _channels_first(x, f"{path}:{x_key}")
    y = _labels(y, len(x), f"{path}:{y_key}")
    if names is None:
        classes = None
    elif names.ndim == 1 and names.dtype.kind in "US":
        classes = [str(n.decode() if isinstance(n, bytes) else n) for n in names.tolist()]
    else:
        raise DataError(f"{path}:classes must be a 1-D array of strings, got {names.dtype}")
    return x, y, _class_names(classes, y, f"{path}:{y_key}")


def _channels_first(x: np.ndarray, where: str) -> np.ndarray:
    """Images (N, 3, H, W) from (N, H, W, 3), as numpy/PIL hold them, or (N, 3, H, W)."""
    if x.ndim == 4 and x.shape[-1] == 3:
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] == 3):
        raise DataError(f"{where} has shape {x.shape}: expected (N, H, W, 3) or (N, 3, H, W)")
    if len(x) == 0:
        raise DataError(f"{where} holds no images")
    return x


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where} must hold {n} integer labels, got {y.dtype} of shape {y.shape}")
    return y.astype(np.int64)


def _class_names(classes: list[str] | None, y: np.ndarray, where: str) -> list[str]:
    """``classes`` checked against the labels; None numbers them up to the largest label."""
    classes = [str(i) for i in range(int(y.max()) + 1)] if classes is None else classes
    _check_labels(y, len(classes), where)
    return classes


# --- imagefolder -------------------------------------------------------------------------------


def _list_imagefolder(base: Path, split: str) -> tuple[list[str], np.ndarray, list[str], Path]:
    """Image paths and labels in torchvision ImageFolder order, from ``<base>/<split>/`` (the
    test split also from ``val/``), or from ``<base>`` itself when it has no split folders.
    Tiny-ImageNet's layout works as it ships: its test split is ``val/`` (``images/`` and
    ``val_annotations.txt``; its own ``test/`` has no labels), training images sit in
    ``train/<class>/images/``."""
    if split == "test" and (base / "val" / ANNOTATIONS).is_file():
        files, labels, classes = list_annotated(base / "val")
        return files, labels, classes, base / "val"
    folder = next((base / f for f in SPLIT_FOLDERS[split] if (base / f).is_dir()), None)
    if folder is None:
        present = [f for names in SPLIT_FOLDERS.values() for f in names if (base / f).is_dir()]
        if present:
            wanted = " or ".join(f"{f}/" for f in SPLIT_FOLDERS[split])
            raise DataError(f"{base} has {', '.join(present)}/ but no {wanted} split folder")
        folder = base  # no split folders: the same class folders serve every split
    files, labels, classes = list_classes(folder)
    return files, labels, classes, folder


def _read_image(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _cached_decode(files: list[str], folder: Path, desc: str, progress: bool) -> np.ndarray:
    """:func:`_decode_images`, kept in the cache (``<cache>/decoded/<key>/images.npy``) under a
    hash of the files' names, sizes and modification times: the next run of a recipe reads one
    array instead of decoding thousands of JPEGs. An edited, added or removed file changes the
    key; an unreadable cache file is decoded afresh. Processes that want the same files
    (torchrun ranks) wait for the one that decodes them."""
    lines = []
    for f in files:
        stat = os.stat(f)
        lines.append(f"{os.path.relpath(f, folder)}\t{stat.st_size}\t{stat.st_mtime_ns}")
    entry = cache_dir() / "decoded" / hash_text(f"{folder.resolve()}\n" + "\n".join(lines))
    target = entry / "images.npy"
    with cache_lock(entry):
        try:
            images = np.load(target)
            if images.dtype == np.uint8 and images.ndim == 4 and len(images) == len(files):
                return images
        except (OSError, ValueError, EOFError):
            pass  # missing, truncated or foreign: decode again and replace it
        images = _decode_images(files, desc, progress)
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            np.save(f, images)
            f.flush()
            os.fsync(f.fileno())
    return images


def _decode_images(files: list[str], desc: str, progress: bool) -> np.ndarray:
    """Decode ``files`` into one (N, 3, H, W) uint8 array, in order, on a few threads.

    Every image must have the first one's size. Problems are collected and the first one in
    file order is raised, so the message does not depend on thread timing.
    """
    try:
        first = _read_image(files[0])
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise DataError(f"cannot decode image {files[0]}: {_one_line(e)}") from e
    height, width = first.shape[:2]
    out = np.empty((len(files), 3, height, width), dtype=np.uint8)
    problems: dict[int, tuple[str, Exception | None]] = {}

    def decode(start: int) -> int:
        stop = min(start + _DECODE_CHUNK, len(files))
        for i in range(start, stop):
            try:
                pixels = _read_image(files[i])
            except Exception as e:  # see above; re-raised below as a DataError naming the file
                problems[i] = (f"cannot decode image {files[i]}: {_one_line(e)}", e)
                continue
            if pixels.shape != first.shape:
                problems[i] = (
                    f"image {files[i]} is {pixels.shape[1]}x{pixels.shape[0]} but {files[0]} is "
                    f"{width}x{height}: all images of a data set must have the same size",
                    None,
                )
                continue
            out[i] = pixels.transpose(2, 0, 1)
        return stop - start

    threads = min(_DECODE_THREADS, math.ceil(len(files) / _DECODE_CHUNK))
    with (
        ThreadPoolExecutor(threads) as pool,
        bar(progress=progress, total=len(files), desc=desc, unit="img") as decoded,
    ):
        for done in pool.map(decode, range(0, len(files), _DECODE_CHUNK)):
            decoded.update(done)
    if problems:
        message, error = problems[min(problems)]
        raise DataError(message) from error
    return out
