"""Image folders that stay on disk: ImageNet-scale sets, decoded per image when they are used.

An ``imagefolder:<path>`` read with ``data.image_size = S`` (> 0) is not decoded into memory:
:class:`FolderImages` holds the file list and decodes on access, with the standard ImageNet
transforms of torchvision/timm:

* training: ``RandomResizedCrop(S)`` (scale 0.08-1, ratio 3/4-4/3, bilinear) + horizontal flip,
  every draw from the per-sample generator the trainer seeds with (seed, epoch, index), so a run
  repeats exactly whatever the number of DataLoader workers;
* evaluation: ``Resize(floor(S / crop_pct))`` of the shorter side + ``CenterCrop(S)``
  (crop_pct 0.875: 256 -> 224).

It serves as the ``images`` of an :class:`~robench.data.datasets.ImageData`: indexing gives uint8
(3, S, S) images as a tensor does, and :meth:`FolderImages.loader` streams batches decoded in
DataLoader workers (what evaluation uses). The same class reads the benchmark folders:
ImageNet-C (``<root>/<corruption>/<severity>/<class>/<image>``) and ImageNet-R
(``<root>/<class>/<image>``), with their classes mapped by name onto the training classes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import InterpolationMode

from robench.errors import DataError
from robench.io import hash_text

# torchvision's ImageFolder extensions, so a folder it reads is a folder we read.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: timm's default eval crop: resize the shorter side to S / 0.875, centre-crop S
CROP_PCT = 0.875
#: torchvision RandomResizedCrop defaults
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
_THREADS = min(4, os.cpu_count() or 1)


def read_rgb(path: str) -> Image.Image:
    """An image file as RGB, or one DataError line naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        message = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"cannot decode image {path}: {message}") from e


def random_resized_crop_box(
    height: int, width: int, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(top, left, h, w): torchvision's ``RandomResizedCrop.get_params`` drawn from ``rng``
    instead of torch's global generator (10 tries, then the central crop of the allowed ratio)."""
    area = height * width
    log_ratio = np.log(RRC_RATIO)
    for _ in range(10):
        target = area * rng.uniform(*RRC_SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1)), h, w
    ratio = width / height
    if ratio < RRC_RATIO[0]:
        w, h = width, round(width / RRC_RATIO[0])
    elif ratio > RRC_RATIO[1]:
        h, w = height, round(height * RRC_RATIO[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


class FolderImages(Dataset):
    """uint8 images of a list of files at ``size`` px, decoded on access.

    ``resize`` is the shorter side before the centre crop (``floor(size / crop_pct)`` for a
    validation set; ``size`` for sets stored already cropped, such as ImageNet-C). ``workers``
    are the DataLoader workers :meth:`loader` decodes with.
    """

    dtype = torch.uint8

    def __init__(self, files: Sequence[str], size: int, resize: int, workers: int = 0) -> None:
        if size < 1 or resize < size:
            raise DataError(f"need image_size >= 1 and a resize >= it, got {size} and {resize}")
        self.files = list(files)
        self.size, self.resize, self.workers = size, resize, workers

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), 3, self.size, self.size)

    def __len__(self) -> int:
        return len(self.files)

    def eval_image(self, index: int) -> np.ndarray:
        """Resize + centre crop: uint8 (S, S, 3)."""
        image = TF.resize(read_rgb(self.files[index]), self.resize, InterpolationMode.BILINEAR)
        return np.array(TF.center_crop(image, [self.size, self.size]))

    def train_image(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """RandomResizedCrop + horizontal flip, every draw from ``rng``: uint8 (S, S, 3)."""
        image = read_rgb(self.files[index])
        top, left, h, w = random_resized_crop_box(image.height, image.width, rng)
        size = [self.size, self.size]
        crop = TF.resized_crop(image, top, left, h, w, size, InterpolationMode.BILINEAR)
        pixels = np.array(crop)
        return np.ascontiguousarray(pixels[:, ::-1]) if rng.random() < 0.5 else pixels

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray | torch.Tensor):
        """An int gives one uint8 (3, S, S) tensor; a slice or indices a stacked (n, 3, S, S)
        batch, decoded on a few threads (what tensor indexing would give)."""
        if isinstance(key, (int, np.integer)) or (torch.is_tensor(key) and key.ndim == 0):
            return torch.from_numpy(self.eval_image(int(key)).transpose(2, 0, 1).copy())
        index = range(len(self))[key] if isinstance(key, slice) else np.asarray(key).tolist()
        out = torch.empty((len(index), 3, self.size, self.size), dtype=torch.uint8)
        with ThreadPoolExecutor(_THREADS) as pool:
            for row, image in enumerate(pool.map(self.eval_image, index)):
                out[row] = torch.from_numpy(image.transpose(2, 0, 1))
        return out

    def subset(self, index: Sequence[int] | np.ndarray) -> FolderImages:
        """The images at ``index``, still on disk."""
        files = [self.files[i] for i in np.asarray(index).tolist()]
        return FolderImages(files, self.size, self.resize, self.workers)

    def loader(self, batch_size: int) -> DataLoader:
        """uint8 (B, 3, S, S) batches in file order, decoded in ``workers`` DataLoader workers."""
        return DataLoader(self, batch_size=batch_size, num_workers=self.workers)


def eval_resize(size: int, crop_pct: float) -> int:
    """The shorter side before the centre crop, as timm computes it: floor(size / crop_pct)."""
    if not 0 < crop_pct <= 1:
        raise DataError(f"crop_pct must be in (0, 1], got {crop_pct}")
    return math.floor(size / crop_pct)


def files_hash(files: Sequence[str], labels: np.ndarray, root: Path, settings: str) -> str:
    """A data identity over file names (relative to ``root``), file sizes, labels and the
    transform settings: cheap on a million files, unlike hashing their contents."""
    lines = [
        f"{os.path.relpath(f, root)}\t{os.stat(f).st_size}\t{y}"
        for f, y in zip(files, labels.tolist(), strict=True)
    ]
    return hash_text(settings + "\n" + "\n".join(lines))


def map_classes(found: Sequence[str], classes: Sequence[str], where: str | Path) -> np.ndarray:
    """Training label of each class folder name in ``found``; one error line naming the unknown
    folders when some are not training classes."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = [name for name in found if name not in index]
    if unknown:
        raise DataError(
            f"{where} has class folders that are not among the {len(classes)} training classes "
            f"({name_list(unknown)}): its class folders must be named as the training set's"
        )
    return np.asarray([index[name] for name in found], dtype=np.int64)


def name_list(names: Sequence[str], limit: int = 5) -> str:
    """``[a, b, c and 7 more]`` for error messages."""
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"[{shown}{more}]" if names else "none"


def list_classes(folder: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """Image paths, labels and class names of ``<folder>/<class>/<image>`` in torchvision
    ImageFolder order (sorted classes, sorted walk, symlinks followed).

    Hidden folders and files (``.ipynb_checkpoints``, macOS ``._*``) are skipped.
    """
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and e.name[0] != ".")
    if not classes:
        raise DataError(f"{folder} has no class sub-folders: expected {folder}/<class>/<image>")
    files: list[str] = []
    labels: list[int] = []
    empty = []
    seen = {os.path.realpath(folder / name) for name in classes}
    for label, name in enumerate(classes):
        found = _image_files(folder / name, seen)
        if not found:
            empty.append(name)
        files += found
        labels += [label] * len(found)
    if empty:
        raise DataError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) in class folder(s) {name_list(empty)} "
            f"of {folder}"
        )
    return files, np.asarray(labels, dtype=np.int64), classes


#: Tiny-ImageNet's val/ holds images/<file> and this list of (file, class, box) lines
ANNOTATIONS = "val_annotations.txt"


def list_annotated(folder: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """Image paths, labels and class names of a split laid out as Tiny-ImageNet's ``val/``:
    ``images/<file>`` and :data:`ANNOTATIONS`, one tab-separated ``file, class, box`` line per
    image. In the order of the same images sorted into class folders (class, then file), so a
    copy reorganised that way reads the same."""
    listing = folder / ANNOTATIONS
    pairs = []
    for number, line in enumerate(listing.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0] or not fields[1]:
            if line.strip():
                raise DataError(
                    f"{listing} line {number} is not 'file<TAB>class[<TAB>box]': {line[:60]!r}"
                )
            continue
        pairs.append((fields[1], fields[0]))
    if not pairs:
        raise DataError(f"{listing} lists no images")
    pairs.sort()
    missing = [name for _, name in pairs if not (folder / "images" / name).is_file()]
    if missing:
        raise DataError(
            f"{listing} lists {len(missing)} image(s) not in {folder / 'images'}: "
            f"{name_list(missing)}"
        )
    classes = sorted({cls for cls, _ in pairs})
    index = {cls: i for i, cls in enumerate(classes)}
    files = [str(folder / "images" / name) for _, name in pairs]
    return files, np.array([index[cls] for cls, _ in pairs], dtype=np.int64), classes


def _image_files(class_dir: Path, seen: set[str]) -> list[str]:
    """The images under ``class_dir``, symlinks followed. A sub-folder that leads to a folder in
    ``seen`` (the real paths of every class folder and of what was read so far) or to one above
    it (a loop such as ``cat/loop -> ..``) is an error: following it would label other classes'
    images, or the same images twice, as this class."""
    walked = []
    for parent, dirs, names in os.walk(class_dir, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        here = os.path.realpath(parent)
        for d in dirs:
            real = os.path.realpath(os.path.join(parent, d))
            if real in seen or here == real or here.startswith(real + os.sep):
                raise DataError(
                    f"{os.path.join(parent, d)} leads back to {real}, a folder already read "
                    "(a symlink loop or a second link to it): remove the link"
                )
            seen.add(real)
        walked.append((parent, names))
    return [
        os.path.join(parent, f)
        for parent, names in sorted(walked)
        for f in sorted(names)
        if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
    ]


def read_class_folder(
    folder: Path, classes: Sequence[str]
) -> tuple[list[str], np.ndarray, list[int]]:
    """Files, training labels and the training labels present, of ``<folder>/<class>/<image>``
    (ImageNet-R: a subset of the training classes)."""
    files, labels, found = list_classes(folder)
    to_train = map_classes(found, classes, folder)
    return files, to_train[labels], sorted(to_train.tolist())


def corrupted_folder(root: Path, corruption: str, severity: int) -> Path:
    """``<root>/<corruption>/<severity>``, the ImageNet-C layout, or one error line."""
    folder = root / corruption / str(severity)
    if not folder.is_dir():
        raise DataError(
            f"{folder} does not exist: an ImageNet-C style folder holds "
            f"<corruption>/<severity>/<class>/<image> for every corruption and severity evaluated"
        )
    return folder


def is_corrupted_folder(root: Path, corruption: str) -> bool:
    """Whether ``root`` looks like ImageNet-C (``<corruption>/`` sub-folders, no ``.npy``)."""
    return (root / corruption).is_dir() and not (root / f"{corruption}.npy").exists()
