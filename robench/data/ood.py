"""Out-of-distribution image sets for OOD detection, in [0, 1] pixel space.

Names (``load_ood_set``):
- ``gaussian``, ``rademacher``, ``blobs``: the outlier-exposure synthetic sets
  (``hendrycks/outlier-exposure`` ``CIFAR/test.py``), generated in pixel space so that a model
  normalising with mean = std = 0.5 sees exactly OE's [-1, 1] inputs. They are **float32**
  tensors: Gaussian and Blobs values are continuous and rounding them to uint8 would change the
  distribution OE defines.
- ``textures``: patches of the texture pictures scikit-image ships offline (brick, grass, gravel;
  grey, repeated to RGB), a stand-in for DTD, which cannot be downloaded here.
- ``imagefolder:<path>``: every image under a folder (recursively), resized and centre-cropped.
- ``svhn[:<root>]``, ``cifar10[:<root>]``, ``cifar100[:<root>]``: the official test sets
  (torchvision's SVHN layout, the CIFAR python-version files), root defaulting to the data root.
Pictures are **uint8** tensors. Every draw comes from a NumPy generator seeded by the caller.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from robench.data.datasets import load_dataset
from robench.data.folders import IMAGE_EXTENSIONS
from robench.errors import DataError

SYNTHETIC = ("gaussian", "rademacher", "blobs")
DEFAULT_SETS = (*SYNTHETIC, "textures")
TORCHVISION_SETS = ("svhn", "cifar10", "cifar100")
TEXTURE_PICTURES = ("brick", "grass", "gravel")


@dataclass
class OODSet:
    """One OOD set: ``images`` (N, 3, H, W), float32 in [0, 1] or uint8."""

    name: str  # the label used in metric keys, e.g. "gaussian", "svhn", "places365"
    images: torch.Tensor
    source: str


def gaussian(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """OE Gaussian noise: clip(N(0, 0.5^2), -1, 1) in [-1, 1] = clip(0.5 + 0.25 N(0, 1), 0, 1)."""
    return np.clip(0.5 + 0.25 * rng.standard_normal((n, 3, size, size)), 0, 1).astype(np.float32)


def rademacher(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """OE Rademacher noise: each value -1 or +1 with p = 0.5, i.e. 0 or 1 in pixel space."""
    return rng.binomial(1, 0.5, size=(n, 3, size, size)).astype(np.float32)


def blobs(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """OE Blobs: Bernoulli(0.7) per value, 3-D Gaussian blur (sigma 1.5, over rows, columns and
    colour together, as OE's ``multichannel=False``), values below 0.75 set to 0."""
    gaussian_filter = _skimage("filters").gaussian
    out = rng.binomial(1, 0.7, size=(n, size, size, 3)).astype(np.float32)
    for i in range(n):
        out[i] = gaussian_filter(out[i], sigma=1.5, channel_axis=None)
    out[out < 0.75] = 0.0
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def textures(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Texture patches: a random picture, square crop (side ``size``..256), quarter-turn,
    resized to ``size`` (bilinear, antialiased), grey repeated to RGB; uint8 (n, 3, size, size)."""
    data = _skimage("data")
    pictures = [Image.fromarray(getattr(data, name)()) for name in TEXTURE_PICTURES]
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        picture = pictures[rng.integers(len(pictures))]
        side = int(rng.integers(size, min(256, *picture.size) + 1))
        left = int(rng.integers(picture.width - side + 1))
        top = int(rng.integers(picture.height - side + 1))
        patch = picture.crop((left, top, left + side, top + side))
        patch = patch.resize((size, size), Image.Resampling.BILINEAR)
        out[i] = np.rot90(np.asarray(patch), k=int(rng.integers(4)))[None]
    return out


def image_folder(path: Path, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` images (a seeded random choice when there are more) from anywhere under
    ``path``, shorter side resized to ``size`` then centre-cropped (OE's Resize + CenterCrop)."""
    files = sorted(
        os.path.join(parent, name)
        for parent, _, names in os.walk(path, followlinks=True)
        for name in names
        if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {path}")
    if len(files) > n:
        files = [files[i] for i in np.sort(rng.choice(len(files), n, replace=False))]
    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as image:
                picture = image.convert("RGB")
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
            raise DataError(f"cannot decode OOD image {file}: {e}") from e
        scale = size / min(picture.size)
        width = max(size, round(picture.width * scale))
        height = max(size, round(picture.height * scale))
        picture = picture.resize((width, height), Image.Resampling.BILINEAR)
        left, top = (width - size) // 2, (height - size) // 2
        out[i] = np.asarray(picture.crop((left, top, left + size, top + size))).transpose(2, 0, 1)
    return out


def load_ood_set(
    spec: str, *, n: int, image_size: int, seed: int, data_root: Path | None = None
) -> OODSet:
    """The OOD set named by ``spec`` (see the module docstring), at most ``n`` images of
    ``image_size``; ``seed`` decides every random draw. Missing data raises :class:`DataError`."""
    rng = np.random.default_rng(seed)
    kind, _, arg = spec.partition(":")
    if spec in SYNTHETIC:
        generate = {"gaussian": gaussian, "rademacher": rademacher, "blobs": blobs}[spec]
        array, source = generate(n, image_size, rng), f"synthetic (seed {seed})"
    elif spec == "textures":
        array = textures(n, image_size, rng)
        source = f"scikit-image {', '.join(TEXTURE_PICTURES)} (seed {seed})"
    elif kind == "imagefolder" and arg:
        path = _existing_folder(arg, data_root, spec)
        array, source, kind = image_folder(path, n, image_size, rng), str(path), path.name
    elif kind in TORCHVISION_SETS:
        root = Path(arg) if arg else data_root
        if root is None:
            raise DataError(
                f"OOD set {spec!r} needs a root: write {kind}:<root> or set a data root"
            )
        array, source = _official_test_set(kind, root, n, rng), str(root)
    else:
        raise DataError(
            f"unknown OOD set {spec!r}: use {', '.join(DEFAULT_SETS)}, imagefolder:<path>, "
            f"or {', '.join(t + '[:<root>]' for t in TORCHVISION_SETS)}"
        )
    images = torch.from_numpy(array)
    if images.shape[-1] != image_size or images.shape[-2] != image_size:
        images = _resize(images, image_size)
    return OODSet(set_label(kind), images, source)


def set_label(name: str) -> str:
    """A metric-key-safe label: lower case, runs of other characters as one underscore."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "set"


def _existing_folder(arg: str, data_root: Path | None, spec: str) -> Path:
    given = Path(arg).expanduser()
    tried = [given] if given.is_absolute() or data_root is None else [given, data_root / given]
    for path in tried:
        if path.is_dir():
            return path.resolve()
    raise DataError(f"OOD set {spec}: no such folder; tried {', '.join(map(str, tried))}")


def _official_test_set(name: str, root: Path, n: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded random ``n`` of the official test split (OE: shuffled loader, first 2,000)."""
    if name == "svhn":
        from torchvision.datasets import SVHN

        try:
            array = SVHN(str(root), split="test", download=False).data  # uint8 (N, 3, 32, 32)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            raise DataError(
                f"SVHN test set not found under {root}: expected {root / 'test_32x32.mat'} ({e})"
            ) from e
    else:
        array = load_dataset(name, "test", root=root, progress=False).images.numpy()
    if len(array) > n:
        array = array[np.sort(rng.choice(len(array), n, replace=False))]
    return np.ascontiguousarray(array)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bilinear resize to ``size`` x ``size``, keeping the dtype."""
    out = F.interpolate(
        images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    if images.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.clamp_(0, 1)


def _skimage(module: str) -> ModuleType:
    """``skimage.<module>``, or a DataError saying how to install scikit-image."""
    try:
        return importlib.import_module(f"skimage.{module}")
    except ImportError as e:
        raise DataError(
            "the blobs and textures OOD sets need scikit-image: pip install scikit-image"
        ) from e
