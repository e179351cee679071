"""Mixing sets for PixMix and IPMix: procedural IFS fractals (no download) or any image folder.

The official sets (PixMix "fractals and feature visualizations", IPMix's ~13k-picture set) are
Google-Drive downloads. The default ``"fractals"`` stands in for them with colourised iterated
function system fractals like the IFS part of those sets (Anderson & Farrell style: 2-4 random
contractive affine maps, chaos-game rendering, random colours and background), deterministic by
seed and cached on disk. ``"imagefolder:<path>"`` loads a downloaded set as torchvision's
``ImageFolder`` would (at least one sub-folder, any depth below it; labels ignored).

A set is resized once at load time (shorter side 36 for 32-pixel training images, like the
official ``Resize(36)``); :meth:`MixingSet.sample` does the per-sample ``RandomCrop``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.transforms import InterpolationMode

from robench.console import bar
from robench.errors import ConfigError, DataError
from robench.io import atomic_write, cache_dir, cache_lock, hash_text, write_json

#: bump when the pictures :func:`fractal_pictures` draws for a seed change (invalidates caches)
GENERATOR_VERSION = 1
#: pictures drawn from one seeded generator; a set of n pictures is a prefix of any larger one
CHUNK = 50
WALKERS = 512  # chaos-game points run in parallel per picture
BURN_IN = 10  # steps before points lie on the attractor (maps contract by <= 0.95 per step)
STEPS = 50  # recorded steps: WALKERS * STEPS points per picture
RENDER_SIZE = 64  # side of the cached pictures (resized to the training size at load time)


@dataclass(frozen=True)
class MixingSet:
    """Pre-resized uint8 pictures ``(M, H, W, 3)``; ``sizes[i]`` is picture i's (h, w)."""

    images: np.ndarray
    sizes: np.ndarray
    crop: int
    source: str

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly drawn picture, randomly cropped to ``crop`` x ``crop`` (uint8 HWC)."""
        i = rng.integers(len(self.images))
        h, w = self.sizes[i]
        top = rng.integers(h - self.crop + 1)
        left = rng.integers(w - self.crop + 1)
        return self.images[i, top : top + self.crop, left : left + self.crop]


def resize_for(image_size: int) -> int:
    """Shorter side before the random crop: 36 for 32 px, 256 for 224 px (official), else 9/8."""
    return {32: 36, 224: 256}.get(image_size, round(image_size * 9 / 8))


@functools.lru_cache(maxsize=4)
def load_mixing_set(
    spec: str = "fractals", count: int = 1000, image_size: int = 32, seed: int = 0
) -> MixingSet:
    """``"fractals"`` (``count`` cached IFS pictures) or ``"imagefolder:<path>"`` (all of it).

    Memoised per process, so several plugins (and the JSD views) share one read-only array.
    """
    resize = resize_for(image_size)
    pictures: Iterable[Image.Image]
    if spec == "fractals":
        if count < 1:
            raise ConfigError(f"mixing_count must be >= 1, got {count}")
        pictures = map(Image.fromarray, cached_fractals(count, max(RENDER_SIZE, resize), seed))
        source = f"fractals (ifs v{GENERATOR_VERSION}, seed {seed})"
    elif spec.startswith("imagefolder:"):
        root = spec.removeprefix("imagefolder:")
        pictures = _read_folder(Path(root))
        source = f"imagefolder:{root}"
    else:
        raise ConfigError(f"mixing_set must be 'fractals' or 'imagefolder:<path>', got {spec!r}")
    images, sizes = _resize_and_pad(pictures, resize)
    images.flags.writeable = False
    return MixingSet(images, sizes, image_size, f"{source}: {len(images)} pictures")


def _read_folder(root: Path) -> Iterator[Image.Image]:
    """The pictures of an ImageFolder layout, decoded one at a time (the set can be large)."""
    try:
        folder = ImageFolder(str(root), allow_empty=True)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise DataError(
            f"mixing set {root}: {err} (put the pictures in at least one sub-folder)"
        ) from None
    if not folder.samples:
        raise DataError(f"mixing set {root}: no image files in its sub-folders")
    return (folder.loader(path) for path, _ in folder.samples)


def _resize_and_pad(pictures: Iterable[Image.Image], resize: int) -> tuple[np.ndarray, np.ndarray]:
    """torchvision ``Resize(resize)`` (bilinear, shorter side) for each; pad into one array."""
    arrays = [np.asarray(TF.resize(p, [resize], InterpolationMode.BILINEAR)) for p in pictures]
    sizes = np.array([a.shape[:2] for a in arrays], dtype=np.int64)
    out = np.zeros((len(arrays), *sizes.max(axis=0), 3), dtype=np.uint8)
    for out_i, a in zip(out, arrays, strict=True):
        out_i[: a.shape[0], : a.shape[1]] = a
    return out, sizes


# --- procedural fractals -----------------------------------------------------------------------


def cached_fractals(count: int, size: int = RENDER_SIZE, seed: int = 0) -> np.ndarray:
    """:func:`fractal_pictures` through the disk cache ``cache_dir()/mixing/<key>/``.

    The cache holds ``pictures.npy`` and ``manifest.json`` (generator version, parameters, seed,
    count, sha256 of the array). It is reused only when the manifest matches these parameters
    and the array's checksum verifies; anything else (missing, stale, corrupt) is regenerated.
    Both files are written atomically, the manifest last, under the entry's cache lock.
    """
    params = {
        "generator": "ifs",
        "version": GENERATOR_VERSION,
        "count": count,
        "size": size,
        "seed": seed,
        "walkers": WALKERS,
        "steps": STEPS,
    }
    folder = cache_dir() / "mixing" / f"fractals-{hash_text(json.dumps(params, sort_keys=True))}"
    with cache_lock(folder):  # made once when several processes start at the same time
        cached = _read_cache(folder, params)
        if cached is not None:
            return cached
        pictures = fractal_pictures(count, size, seed)
        with atomic_write(folder / "pictures.npy", "wb") as f:
            np.save(f, pictures)
        write_json(folder / "manifest.json", {**params, "sha256": _sha256(pictures)})
    return pictures


def _read_cache(folder: Path, params: dict[str, object]) -> np.ndarray | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        pictures = np.load(folder / "pictures.npy", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if {k: manifest.get(k) for k in params} != params or manifest.get("sha256") != _sha256(
        pictures
    ):
        return None
    return pictures


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()


def fractal_pictures(count: int, size: int = RENDER_SIZE, seed: int = 0) -> np.ndarray:
    """``count`` colourised IFS fractals, uint8 (count, size, size, 3), deterministic by seed.

    Picture i depends only on (seed, i // CHUNK), so smaller sets are prefixes of larger ones.
    """
    chunks = -(-count // CHUNK)
    out = [
        _fractal_chunk(np.random.default_rng([seed, c]), size)
        for c in bar(range(chunks), progress=True, desc="fractal mixing set", unit="chunk")
    ]
    return np.concatenate(out)[:count] if out else np.zeros((0, size, size, 3), np.uint8)


def _random_ifs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n systems of 2-4 affine maps (padded to 4): matrices (n,4,2,2), offsets (n,4,2), probs.

    Each matrix is R(theta) diag(s1, +-s2) R(phi); the singular values are rescaled so that
    sum(s1 + 2 s2) falls in Anderson & Farrell's "sigma-factor" band [(5+N)/2, (6+N)/2], which
    gives space-filling but not degenerate attractors.
    """
    n_maps = rng.integers(2, 5, size=n)
    used = np.arange(4)[None] < n_maps[:, None]
    s1 = rng.uniform(0.25, 1.0, size=(n, 4))
    s2 = s1 * rng.uniform(0.1, 1.0, size=(n, 4))
    target = rng.uniform((5 + n_maps) / 2, (6 + n_maps) / 2)
    factor = target / ((s1 + 2 * s2) * used).sum(axis=1)
    s1, s2 = np.minimum(s1 * factor[:, None], 0.95), np.minimum(s2 * factor[:, None], 0.95)
    s2 = s2 * rng.choice([-1.0, 1.0], size=(n, 4))

    def rot(angle: np.ndarray) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)

    diag = np.zeros((n, 4, 2, 2))
    diag[..., 0, 0], diag[..., 1, 1] = s1, s2
    theta, phi = rng.uniform(0, 2 * np.pi, size=(2, n, 4))
    matrices = rot(theta) @ diag @ rot(phi)
    offsets = rng.uniform(-1, 1, size=(n, 4, 2))
    weight = np.abs(s1 * s2) * used + 1e-3 * used
    return matrices, offsets, weight / weight.sum(axis=1, keepdims=True)


def _fractal_chunk(rng: np.random.Generator, size: int) -> np.ndarray:
    """CHUNK pictures: a vectorised chaos game, a log-density alpha, colour by map history."""
    n = CHUNK
    matrices, offsets, probs = _random_ifs(n, rng)
    palette = rng.uniform(0, 1, size=(n, 4, 3)) ** 0.7  # one colour per map
    # one row per map: the 2x2 matrix, the offset and the colour, gathered in one take per step
    table = np.concatenate([matrices.reshape(n, 4, 4), offsets, palette], axis=-1)
    table = table.reshape(n * 4, 9).astype(np.float32)
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]  # exactly 1 from the last used map on, so the draw never picks padding
    first_row = 4 * np.arange(n)[:, None]
    x, y = rng.uniform(-1, 1, size=(2, n, WALKERS)).astype(np.float32)
    col = np.full((n, WALKERS, 3), 0.5, np.float32)
    trace = np.empty((2, n, STEPS, WALKERS), np.float32)
    colours = np.empty((n, STEPS, WALKERS, 3), np.float32)
    for step in range(BURN_IN + STEPS):
        u = rng.random((n, WALKERS))
        k = first_row + (u > cum[:, :1])
        for j in (1, 2):
            k += u > cum[:, j : j + 1]
        c = table[k]
        x, y = c[..., 0] * x + c[..., 1] * y + c[..., 4], c[..., 2] * x + c[..., 3] * y + c[..., 5]
        col = (col + c[..., 6:]) * 0.5
        if step >= BURN_IN:
            trace[0, :, step - BURN_IN], trace[1, :, step - BURN_IN] = x, y
            colours[:, step - BURN_IN] = col

    # frame each attractor (robust extent, random margin), keep the aspect ratio
    points = trace.reshape(2, n, -1)
    lo, hi = np.quantile(points[..., ::8], [0.002, 0.998], axis=2)  # (quantile, axis, picture)
    scale = (1 - 2 * rng.uniform(0.02, 0.2, size=n)) * size / (hi - lo).max(axis=0).clip(1e-6)
    pix = ((points - (lo + hi)[..., None] / 2) * scale[:, None] + size / 2).astype(np.int64)
    inside = ((pix >= 0) & (pix < size)).all(axis=0)
    index = ((np.arange(n)[:, None] * size + pix[1]) * size + pix[0])[inside]
    bins = n * size * size
    counts = np.bincount(index, minlength=bins).reshape(n, size, size)
    point_colours = colours.reshape(n, -1, 3)[inside]
    rgb = (
        np.stack(
            [np.bincount(index, point_colours[:, c], minlength=bins) for c in range(3)], axis=-1
        ).reshape(n, size, size, 3)
        / np.maximum(counts, 1)[..., None]
    )

    density = np.log1p(counts)
    top = np.array([np.quantile(d[d > 0], 0.95) if (d > 0).any() else 1.0 for d in density])
    alpha = np.clip(density / top[:, None, None], 0, 1)[..., None] ** rng.uniform(
        0.5, 1.0, size=(n, 1, 1, 1)
    )
    # background: a linear gradient between two random colours in a random direction
    ends = rng.uniform(0, 1, size=(n, 2, 1, 1, 3)) * rng.uniform(0.2, 1, size=(n, 1, 1, 1, 1))
    angle = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    t = np.clip(xx * np.cos(angle) + yy * np.sin(angle) + 0.5, 0, 1)[..., None]
    background = ends[:, 0] * (1 - t) + ends[:, 1] * t
    pictures = background * (1 - alpha) + rgb * alpha
    return (pictures * 255 + 0.5).astype(np.uint8)
