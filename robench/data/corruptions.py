"""The 19 CIFAR-10-C / ImageNet-C corruptions, re-implemented batched and seedable.

Each corruption follows hendrycks/robustness ``ImageNet-C/create_c/make_cifar_c.py`` (Hendrycks &
Dietterich, ICLR 2019, arXiv:1903.12261), with its quirks kept (they made the published data);
ImageMagick is replaced by a NumPy line kernel (:func:`motion_blur_images`), and scikit-image by
the SciPy calls it wraps. Every random draw comes from the caller's ``numpy.random.Generator``
(one per image), so an image's output depends only on its own generator, never on the batch it
was processed in: ``corrupt`` and ``corrupt_batch`` agree exactly. The work itself is vectorised
over the batch wherever the algorithm allows, which is what makes regenerating CIFAR-10-C take
minutes instead of the reference's ~20 (BENCHMARKS.md).

Outputs are cast like the reference generator saves them: ``np.uint8`` of values already clipped
to [0, 255], i.e. truncation, not rounding (``make_cifar_c.py``'s ``np.uint8`` cast).
"""

from __future__ import annotations

import functools
import importlib.util
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage, sparse

from robench.data.corruption_constants import TABLES, ConstantsTable, get_constants
from robench.errors import ConfigError, DataError
from robench.io import derive_seed

# Bump when any corruption's output changes, so that cached generated sets are rebuilt.
GENERATOR_VERSION = 1
CHUNK = 64  # images per vectorised call

Rngs = Sequence[np.random.Generator]
CorruptionFn = Callable[[np.ndarray, Any, Rngs, ConstantsTable], np.ndarray]


# --------------------------------------------------------------------------- shared helpers


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """The reference's ``np.uint8(np.clip(x, 0, 1) * 255)``: truncation (``make_cifar_c.py``)."""
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def gaussian_filter_images(
    x: np.ndarray, sigma: float, *, mode: str = "nearest", truncate: float = 4.0
) -> np.ndarray:
    """skimage ``gaussian`` per image and channel: blur only the two spatial axes of a batch.

    skimage's defaults (mode 'nearest', truncate 4) are what the reference used; with sigma 0 on
    the batch and channel axes SciPy filters the same axes in the same order, so each image gets
    exactly the per-image result.
    """
    sigmas = (0.0, sigma, sigma) + (0.0,) * (x.ndim - 3)
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


@functools.lru_cache(maxsize=256)
def _zoom_matrix(size: int, factor: float) -> np.ndarray:
    """``clipped_zoom`` along one axis as a (size, size) matrix (``make_cifar_c.py``).

    Crop the centred ``ceil(size / factor)`` pixels, resize with ``scipy.ndimage.zoom(order=1)``
    and keep the centred ``size`` pixels. The coefficients are taken from SciPy itself (zooming
    an identity matrix), so they are exactly SciPy's.
    """
    crop = int(np.ceil(size / factor))
    top = (size - crop) // 2
    zoomed = ndimage.zoom(np.eye(crop), (factor, 1.0), order=1)
    trim = (zoomed.shape[0] - size) // 2
    m = np.zeros((size, size))
    m[:, top : top + crop] = zoomed[trim : trim + size]
    return m


@functools.lru_cache(maxsize=256)
def _zoom_operator(size: int, factor: float) -> sparse.csr_matrix:
    """The 2-D ``clipped_zoom`` on flattened (size * size) images: kron of the 1-D matrices.

    Order-1 zoom is separable, and each output pixel reads at most 2x2 inputs, so a sparse
    product does the reference's ``scipy.ndimage.zoom`` for a whole batch at ~4 multiply-adds a
    value (dense matrices cost 30x more; zoom blur takes about 10 % of the reference's time).
    """
    m = sparse.csr_matrix(_zoom_matrix(size, factor))
    return sparse.kron(m, m, format="csr")


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Centre zoom of a float64 batch (N, S, S[, C]), per image and channel."""
    n, size = x.shape[:2]
    flat = np.moveaxis(x.reshape(n, size * size, -1), 1, 0).reshape(size * size, -1)
    out = _zoom_operator(size, factor) @ flat
    return np.moveaxis(out.reshape(size * size, n, -1), 0, 1).reshape(x.shape)


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's anti-aliased disk kernel (float32, 17x17 when radius <= 8; ``disk()``)."""
    if radius <= 8:
        coords = np.arange(-8, 8 + 1)
        ksize = (3, 3)
    else:
        coords = np.arange(-radius, radius + 1)
        ksize = (5, 5)
    xx, yy = np.meshgrid(coords, coords)
    disk = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    disk /= np.sum(disk)
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def motion_blur_images(x: np.ndarray, radius: int, sigma: float, angles: np.ndarray) -> np.ndarray:
    """Motion blur of a uint8 batch (N, H, W, C) along per-image angles (degrees), float64 out.

    The NumPy replacement for ImageMagick's ``MotionBlurImage`` (as in bethgelab's
    imagecorruptions): a one-sided Gaussian line kernel of ``2 * radius + 1`` taps; tap i reads
    the pixel ``(ceil(i sin a - 0.5), ceil(i cos a - 0.5))`` away, with edge replication, and the
    kernel stops (without renormalising) at the first tap that leaves the image. Taps are summed
    in order in float64, as imagecorruptions does. Each tap is one gather of whole pixels packed
    as uint32, which is what makes it fast.
    """
    n, h, w, c = x.shape
    width = 2 * radius + 1
    taps = np.arange(width)
    kernel = np.exp(-(taps**2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    kernel /= kernel.sum()
    rad = np.deg2rad(np.asarray(angles, dtype=np.float64))
    p0, p1 = width * np.sin(rad), width * np.cos(rad)
    hyp = np.hypot(p0, p1)
    dy = -np.ceil(taps[None, :] * p0[:, None] / hyp[:, None] - 0.5).astype(np.int64)
    dx = -np.ceil(taps[None, :] * p1[:, None] / hyp[:, None] - 0.5).astype(np.int64)
    inside = np.logical_and.accumulate((np.abs(dy) < h) & (np.abs(dx) < w), axis=1)
    weights = np.where(inside, kernel, 0.0)
    if c == 1:
        pixels = x.reshape(-1)
        lanes = 1
    else:  # RGB pixels packed in a uint32 each: one gather moves a whole pixel
        packed = np.zeros((n * h * w, 4), np.uint8)
        packed[:, :c] = x.reshape(-1, c)
        pixels = packed.view(np.uint32).reshape(-1)
        lanes = 4
    base = (np.arange(n) * h * w)[:, None, None]
    rows = np.arange(h)[None, :, None]
    cols = np.arange(w)[None, None, :]
    out = np.zeros((n, h * w, lanes))
    for i in range(width):
        src_r = np.clip(rows - dy[:, i, None, None], 0, h - 1)
        src_c = np.clip(cols - dx[:, i, None, None], 0, w - 1)
        shifted = pixels[(base + src_r * w + src_c).reshape(-1)].view(np.uint8)
        out += weights[:, i, None, None] * shifted.reshape(n, h * w, lanes)
    return out[..., :c].reshape(x.shape)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """skimage ``rgb2hsv`` on float input, with its exact arithmetic (outputs agree bit-wise).

    skimage assigns the hue for "red is max", then "green is max", then "blue is max", each
    overriding the last on ties; the nested ``where`` keeps that precedence.
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = np.maximum(np.maximum(r, g), b)  # = max(-1) and ptp(-1), exactly, but far faster
    delta = v - np.minimum(np.minimum(r, g), b)
    flat = delta == 0.0
    safe = np.where(flat, 1.0, delta)  # flat pixels get hue 0 and saturation 0 below
    hue = np.where(
        b == v,
        4.0 + (r - g) / safe,
        np.where(g == v, 2.0 + (b - r) / safe, (g - b) / safe),
    )
    hue = np.where(flat, 0.0, (hue / 6.0) % 1.0)
    sat = np.where(flat, 0.0, delta / np.where(v == 0.0, 1.0, v))
    return np.stack((hue, sat, v), axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """skimage ``hsv2rgb``, with its exact arithmetic."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hi = np.floor(h * 6)
    f = h * 6 - hi
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    sector = hi.astype(np.uint8) % 6
    # (R, G, B) per sector: 0 (v,t,p) 1 (q,v,p) 2 (p,v,t) 3 (p,q,v) 4 (t,p,v) 5 (v,p,q)
    red = np.choose(sector, (v, q, p, p, t, v))
    green = np.choose(sector, (t, v, v, q, p, p))
    blue = np.choose(sector, (p, p, t, v, v, q))
    return np.stack((red, green, blue), axis=-1)


def _reflect_index(i: np.ndarray, n: int) -> np.ndarray:
    """SciPy's 'reflect' boundary (half-sample symmetric: d c b a | a b c d | d c b a)."""
    i = np.mod(i, 2 * n)
    return np.where(i >= n, 2 * n - 1 - i, i)


def _bilinear_reflect(img: np.ndarray, ry: np.ndarray, rx: np.ndarray) -> np.ndarray:
    """``map_coordinates(order=1, mode='reflect')`` of a batch (N, H, W, C) at (N, H, W) points.

    Reflection is applied to the two neighbour indices, as SciPy does; computed in float64 and
    returned in the input's dtype (SciPy's output dtype).
    """
    n, h, w = img.shape[:3]
    y0 = np.floor(ry)
    x0 = np.floor(rx)
    fy = (ry - y0)[..., None]
    fx = (rx - x0)[..., None]
    y0 = y0.astype(np.int64)
    x0 = x0.astype(np.int64)
    ya, yb = _reflect_index(y0, h), _reflect_index(y0 + 1, h)
    xa, xb = _reflect_index(x0, w), _reflect_index(x0 + 1, w)
    b = np.arange(n)[:, None, None]
    src = img.astype(np.float64)
    top = src[b, ya, xa] * (1 - fx) + src[b, ya, xb] * fx
    bottom = src[b, yb, xa] * (1 - fx) + src[b, yb, xb] * fx
    return (top * (1 - fy) + bottom * fy).astype(img.dtype)


@functools.lru_cache(maxsize=4)
def frost_textures(scale: float) -> tuple[np.ndarray, ...]:
    """frost1..5 as RGB uint8, resized by ``scale`` once (the reference re-reads them per call).

    The pictures ship inside the ``imagecorruptions-imaug`` (or ``imagecorruptions``) wheel; only
    their files are read, the package is never imported (its imports need numba/scikit-image).
    frost6 is shipped but never selected by the reference (``make_cifar_c.py`` draws 0..4).
    """
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the frost corruption needs the frost pictures: pip install --no-deps "
            "imagecorruptions-imaug"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "frost"
    names = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
    out = []
    for name in names:
        bgr = cv2.imread(str(folder / name))
        if bgr is None:
            raise DataError(f"cannot read frost picture {folder / name}; reinstall the package")
        if scale != 1.0:
            # OpenCV bilinear resize, as the reference (sizes at 0.2: 120x180 ... 99x132).
            bgr = cv2.resize(bgr, (0, 0), fx=scale, fy=scale)
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        rgb.setflags(write=False)
        out.append(rgb)
    return tuple(out)


def plasma_fractal(uniforms: np.ndarray, map_size: int, decay: float) -> np.ndarray:
    """Diamond-square height maps in [0, 1] for a batch, from pre-drawn U[0, 1) numbers.

    ``uniforms`` is (N, plasma_draws(map_size)): each image's draws, consumed in the reference's
    order (per step: squares, then the two diamond passes), each as ``wibble * U(-wibble,
    wibble)``. Drawing them up front lets the map be built for the whole batch at once.
    """
    n = uniforms.shape[0]
    maps = np.empty((n, map_size, map_size))
    maps[:, 0, 0] = 0
    step = map_size
    wibble = 100.0
    used = 0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        nonlocal used
        size = total.shape[1] * total.shape[2]
        u = uniforms[:, used : used + size].reshape(total.shape)
        used += size
        return total / 4 + wibble * (-wibble + 2 * wibble * u)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:map_size:step, 0:map_size:step]
        squares = corners + np.roll(corners, shift=-1, axis=1)
        squares += np.roll(squares, shift=-1, axis=2)
        maps[:, half:map_size:step, half:map_size:step] = wibbled_mean(squares)
        centres = maps[:, half:map_size:step, half:map_size:step]
        corners = maps[:, 0:map_size:step, 0:map_size:step]
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:map_size:step, half:map_size:step] = wibbled_mean(left)
        top = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:map_size:step, 0:map_size:step] = wibbled_mean(top)
        step //= 2
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


def plasma_draws(map_size: int) -> int:
    """How many uniforms one plasma map consumes."""
    total, step = 0, map_size
    while step >= 2:
        total += 3 * (map_size // step) ** 2
        step //= 2
    return total


def _next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


# --------------------------------------------------------------------------- noise


def _gaussian_noise(x: np.ndarray, c: float, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    noise = np.stack([r.normal(size=x.shape[1:], scale=c) for r in rngs])
    return _to_uint8(x / 255.0 + noise)


def _shot_noise(x: np.ndarray, c: float, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    lam = x / 255.0 * c
    return _to_uint8(np.stack([r.poisson(lam[i]) for i, r in enumerate(rngs)]) / c)


def _impulse_noise(x: np.ndarray, c: float, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    # skimage random_noise(mode='s&p', amount=c): every *element* (not pixel) flips with
    # probability c, to 1 or 0 with equal odds (skimage ``random_noise(mode="s&p")``; Bernoulli,
    # as skimage >= 0.19 draws).
    draws = np.stack([r.random((2, *x.shape[1:])) for r in rngs])
    flipped = draws[:, 0] <= c
    salted = draws[:, 1] <= 0.5
    out = x / 255.0
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return _to_uint8(out)


def _speckle_noise(x: np.ndarray, c: float, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    x = x / 255.0
    noise = np.stack([r.normal(size=x.shape[1:], scale=c) for r in rngs])
    return _to_uint8(x + x * noise)


# --------------------------------------------------------------------------- blur


def _defocus_blur(x: np.ndarray, c: tuple, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    # cv2.filter2D with the float32 17x17 kernel, per image (a 17x17 kernel takes OpenCV's DFT
    # path, whose rounding a SciPy correlation would not reproduce; border reflect-101).
    kernel = _disk(radius=c[0], alias_blur=c[1])
    x = x / 255.0
    return _to_uint8(np.stack([cv2.filter2D(img, -1, kernel) for img in x]))


def glass_shuffle(y: np.ndarray, offsets: np.ndarray, delta: int) -> None:
    """The reference's local pixel "swap", in place, on a batch (N, H, W, C).

    ``offsets`` is (N, iterations, rows, cols, 2) of (dx, dy) in [-delta, delta - 1], in the
    reference's visiting order (rows H-delta .. delta+1 descending, columns likewise). The source
    line ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` copies instead of swapping (both sides are
    NumPy views in ``make_cifar_c.py``'s ``glass_blur``), so each visited pixel takes the
    *current* value of its source. Sources in rows below (already visited) are final, rows above
    are untouched, and in the same row a source to the right (dx > 0) was written earlier in the
    row: those chains are resolved by pointer jumping, so a row is a few vectorised steps
    instead of a Python loop. With delta = 1 (every CIFAR severity) the offsets are {-1, 0}, no
    source has been visited yet, and a whole pass is a single gather.
    """
    n, h, w = y.shape[:3]
    rows = np.arange(h - delta, delta, -1)
    cols = np.arange(w - delta, delta, -1)
    batch = np.arange(n)
    for it in range(offsets.shape[1]):
        dx = offsets[:, it, ..., 0]
        dy = offsets[:, it, ..., 1]
        if delta == 1:
            src = y[batch[:, None, None], rows[None, :, None] + dy, cols[None, None, :] + dx]
            y[:, rows[:, None], cols[None, :]] = src
            continue
        pos = np.arange(len(cols))
        for k, r in enumerate(rows):
            dxk, dyk = dx[:, k], dy[:, k]
            vals = y[batch[:, None], r + dyk, cols[None, :] + dxk]
            # cols[j] = w - delta - j, so the column dx to the right is visit position j - dx.
            target = pos[None, :] - dxk
            ptr = np.where((dyk == 0) & (dxk > 0) & (target >= 0), target, -1)
            while (ptr >= 0).any():
                has = ptr >= 0
                safe = np.maximum(ptr, 0)
                vals = np.where(has[..., None], np.take_along_axis(vals, safe[..., None], 1), vals)
                ptr = np.where(has, np.take_along_axis(ptr, safe, 1), ptr)
            y[:, r, cols] = vals


def _glass_blur(x: np.ndarray, c: tuple, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    sigma, delta, iterations = c
    h, w = x.shape[1:3]
    visits = (iterations, len(range(h - delta, delta, -1)), len(range(w - delta, delta, -1)), 2)
    offsets = np.stack([r.integers(-delta, delta, size=visits) for r in rngs])
    # Truncating cast to uint8 between the passes (as ``make_cifar_c.py``).
    y = (gaussian_filter_images(x / 255.0, sigma) * 255).astype(np.uint8)
    glass_shuffle(y, offsets, delta)
    return _to_uint8(gaussian_filter_images(y / 255.0, sigma))


def _motion_blur(x: np.ndarray, c: tuple, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    angles = np.array([r.uniform(-45, 45) for r in rngs])
    # ImageMagick would round; the golden statistics match the NumPy kernel saved with the
    # reference's truncating cast (mean 119.85 vs 120.34 clean over the 500 images), which also
    # takes flat areas down one level (the float kernel sums to just under 1).
    return np.clip(motion_blur_images(x, c[0], c[1], angles), 0, 255).astype(np.uint8)


def _zoom_blur(x: np.ndarray, c: tuple, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    # Float32 like the reference: each zoom is computed in float64 and rounded to float32 (SciPy
    # returns the input dtype), then summed in float32 in list order; this keeps flat regions
    # exactly where the reference puts them before the truncating cast. The batch stays in the
    # operators' (pixels, images * channels) layout for the whole sum.
    n, size = x.shape[:2]
    x32 = (x / 255.0).astype(np.float32)
    flat = np.moveaxis(x32.reshape(n, size * size, -1), 1, 0).reshape(size * size, -1)
    flat64 = flat.astype(np.float64)
    out = np.zeros_like(flat)
    for factor in c:
        out += (_zoom_operator(size, factor) @ flat64).astype(np.float32)
    out = np.moveaxis(out.reshape(size * size, n, -1), 0, 1).reshape(x.shape)
    # The list starts at 1.0, so the clean image is counted twice (as ``make_cifar_c.py``).
    return _to_uint8((x32 + out) / (len(c) + 1))


def _gaussian_blur(x: np.ndarray, c: float, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    return _to_uint8(gaussian_filter_images(x / 255.0, c))


# --------------------------------------------------------------------------- weather


def _snow(x: np.ndarray, c: tuple, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    mean, std, zoom, threshold, radius, sigma, blend = c
    n, h, w = x.shape[:3]
    layer = np.stack([r.normal(size=(h, w), loc=mean, scale=std) for r in rngs])
    angles = np.array([r.uniform(-135, -45) for r in rngs])
    layer = clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    # The reference round-trips the layer through an 8-bit greyscale PNG (truncating cast) and
    # ImageMagick's motion blur.
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8)[..., None]
    layer = np.clip(motion_blur_images(layer, radius, sigma, angles), 0, 255).astype(np.uint8)
    layer = layer / 255.0
    x = x.astype(np.float32) / 255.0
    gray = cv2.cvtColor(x.reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY).reshape(n, h, w, 1)
    x = blend * x + (1 - blend) * np.maximum(x, gray * 1.5 + 0.5)
    return _to_uint8(x + layer + np.rot90(layer, k=2, axes=(1, 2)))


def _frost(x: np.ndarray, c: tuple, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    textures = frost_textures(t.frost_scale)
    h, w = x.shape[1:3]
    crops = np.empty(x.shape, dtype=np.uint8)
    for i, r in enumerate(rngs):
        tex = textures[int(r.integers(5))]  # frost1..5 only (as make_cifar_c.py)
        top = int(r.integers(0, tex.shape[0] - h))  # exclusive upper bounds, as randint
        left = int(r.integers(0, tex.shape[1] - w))
        crops[i] = tex[top : top + h, left : left + w]
    return np.clip(c[0] * x + c[1] * crops, 0, 255).astype(np.uint8)


def _fog(x: np.ndarray, c: tuple, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    amplitude, decay = c
    h, w = x.shape[1:3]
    # Map size 32 for CIFAR and 256 for ImageNet's 224, i.e. the next power of two (as the
    # reference scripts).
    size = _next_pow2(max(h, w))
    uniforms = np.stack([r.random(plasma_draws(size)) for r in rngs])
    fog = plasma_fractal(uniforms, size, decay)[:, :h, :w, None]
    x = x / 255.0
    max_val = x.max(axis=(1, 2, 3), keepdims=True)  # taken before the fog is added
    x = x + amplitude * fog
    return _to_uint8(x * max_val / (max_val + amplitude))


def _brightness(x: np.ndarray, c: float, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    hsv = rgb_to_hsv(x / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _to_uint8(hsv_to_rgb(hsv))


def _saturate(x: np.ndarray, c: tuple, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    hsv = rgb_to_hsv(x / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return _to_uint8(hsv_to_rgb(hsv))


def _spatter(x: np.ndarray, c: tuple, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    mean, std, sigma, threshold, intensity, mode = c
    h, w = x.shape[1:3]
    liquid = np.stack([r.normal(size=(h, w), loc=mean, scale=std) for r in rngs])
    liquid = gaussian_filter_images(liquid, sigma)
    liquid[liquid < threshold] = 0
    x = x.astype(np.float32) / 255.0
    if mode == 0:
        return np.stack(
            [water_spatter(img, layer, intensity) for img, layer in zip(x, liquid, strict=True)]
        )
    mud = gaussian_filter_images(np.where(liquid > threshold, 1, 0).astype(np.float32), intensity)
    mud[mud < 0.8] = 0
    mud = mud[..., None]
    colour = np.array([63 / 255.0, 42 / 255.0, 20 / 255.0], dtype=np.float32) * mud
    return _to_uint8(x * (1 - mud) + colour)


def water_spatter(x: np.ndarray, liquid: np.ndarray, intensity: float) -> np.ndarray:
    """Spatter mode 0 ("water") on one float32 image, uint8 out (``make_cifar_c.py``; CIFAR-P)."""
    # ``(liquid * 255).astype(np.uint8)`` in the reference wraps values above 255 on x86; made
    # explicit (int conversion, then modulo 256) so it does not depend on the platform.
    layer = ((liquid * 255).astype(np.int64) & 0xFF).astype(np.uint8)
    dist = 255 - cv2.Canny(layer, 50, 150)
    dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    dist = cv2.filter2D(dist, cv2.CV_8U, emboss)
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    m = layer * dist
    peak = m.max()
    # The reference divides by the maximum even when it is 0 (no liquid above the threshold),
    # which turns the image into NaNs; an empty mask leaves the image as it is instead.
    m = m / peak * intensity if peak > 0 else m
    colour = np.array([175 / 255.0, 238 / 255.0, 238 / 255.0], dtype=np.float32)  # pale turquoise
    return _to_uint8(x + m[..., None] * colour)


# --------------------------------------------------------------------------- digital


def _contrast(x: np.ndarray, c: float, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    x = x / 255.0
    means = np.mean(x, axis=(1, 2), keepdims=True)
    return _to_uint8((x - means) * c + means)


def _elastic_transform(x: np.ndarray, c: tuple, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    alpha, sigma, jitter = c
    n, h, w = x.shape[:3]
    images = x.astype(np.float32) / 255.0
    centre = np.float32((h, w)) // 2
    square = min(h, w) // 3
    pts1 = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    warped = np.empty_like(images)
    fields = []
    for i, r in enumerate(rngs):
        pts2 = pts1 + r.uniform(-jitter, jitter, size=pts1.shape).astype(np.float32)
        affine = cv2.getAffineTransform(pts1, pts2)
        warped[i] = cv2.warpAffine(images[i], affine, (w, h), borderMode=cv2.BORDER_REFLECT_101)
        if alpha:
            fields.append(r.uniform(-1, 1, size=(2, h, w)))
    if not alpha:  # CIFAR severity 1: a pure affine jitter, no displacement field (reference)
        return _to_uint8(warped)
    field = np.stack(fields).reshape(n * 2, h, w)
    # skimage gaussian(mode='reflect', truncate=3); sigma 0 leaves the field unsmoothed.
    field = gaussian_filter_images(field, sigma, mode="reflect", truncate=3) * alpha
    field = field.astype(np.float32)
    field = field.reshape(n, 2, h, w)
    grid_y, grid_x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = _bilinear_reflect(warped, grid_y + field[:, 1], grid_x + field[:, 0])
    return _to_uint8(out)


def _pil_each(x: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(fn(Image.fromarray(img))) for img in x])


def _pixelate(x: np.ndarray, c: float, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    h, w = x.shape[1:3]
    small = (int(w * c), int(h * c))  # floor: 30, 28, 27, 24, 20 px for CIFAR

    def pixelate(img: Image.Image) -> Image.Image:
        return img.resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.BOX)

    return _pil_each(x, pixelate)


def _jpeg_compression(x: np.ndarray, c: int, rngs: Rngs, t: ConstantsTable) -> np.ndarray:
    def jpeg(img: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=c)
        return Image.open(buffer)

    return _pil_each(x, jpeg)


# --------------------------------------------------------------------------- registry

CORRUPTIONS: dict[str, CorruptionFn] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "spatter": _spatter,
    "saturate": _saturate,
}
# Corruptions that draw no random numbers (the golden file holds their exact outputs).
DETERMINISTIC = frozenset(
    {
        "defocus_blur",
        "zoom_blur",
        "contrast",
        "brightness",
        "pixelate",
        "jpeg_compression",
        "gaussian_blur",
        "saturate",
    }
)


def corrupt_batch(
    images: np.ndarray,
    name: str,
    severity: int,
    rngs: Rngs,
    *,
    constants: str | ConstantsTable = "cifar",
) -> np.ndarray:
    """Corrupt uint8 images (N, S, S, 3) at one severity, image i drawing only from ``rngs[i]``."""
    table = get_constants(constants)
    params = table.get(name, severity)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ConfigError(
            f"corruptions take uint8 RGB images (N, H, W, 3); got {images.dtype} {images.shape}"
        )
    if images.shape[1] != images.shape[2]:
        raise ConfigError(f"corruptions need square images; got {images.shape[1:3]}")
    if len(rngs) != len(images):
        raise ConfigError(f"need one generator per image: {len(rngs)} for {len(images)} images")
    check_size(name, table, images.shape[1])
    fn = CORRUPTIONS[name]
    out = np.empty_like(images)
    # Small chunks keep the float64 intermediates in cache; outputs do not depend on chunking.
    for start in range(0, len(images), CHUNK):
        stop = start + CHUNK
        out[start:stop] = fn(images[start:stop], params, rngs[start:stop], table)
    return out


def check_size(name: str, table: ConstantsTable, size: int) -> None:
    """Refuse what a table cannot make at ``size`` px: frost crops its pictures, pre-scaled by
    the table, at a random place (the reference's ``randint(0, side - size)``), so their short
    side must exceed the image's."""
    if name != "frost" or size <= _frost_limit(table):
        return
    limits = {other.name: _frost_limit(other) for other in TABLES.values()}
    fits = ", ".join(f"{k!r} up to {v} px" for k, v in limits.items() if v >= size)
    raise ConfigError(
        f"frost with the {table.name!r} constants works up to {limits[table.name]} px "
        f"(its pictures are scaled x{table.frost_scale}), not {size} px; choose constants "
        f"that fit ({fits or 'none does'}) or evaluate a corrupted folder"
    )


def _frost_limit(table: ConstantsTable) -> int:
    """The largest image side frost can crop from the table's pictures."""
    return min(min(t.shape[:2]) for t in frost_textures(table.frost_scale)) - 1


def corrupt(
    image: np.ndarray,
    name: str,
    severity: int,
    rng: np.random.Generator,
    *,
    constants: str | ConstantsTable = "cifar",
) -> np.ndarray:
    """Corrupt one uint8 HWC image; identical to its row of :func:`corrupt_batch`."""
    return corrupt_batch(np.asarray(image)[None], name, severity, [rng], constants=constants)[0]


def corruption_seed_rngs(
    seed: int, name: str, severity: int, indices: Sequence[int] | np.ndarray
) -> list[np.random.Generator]:
    """One generator per image index, from ``derive_seed(seed, name, severity, index)``."""
    return [np.random.default_rng(derive_seed(seed, name, severity, int(i))) for i in indices]
