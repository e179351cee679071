"""Batched tensor forms of the PIL image ops and the pixel mixing operators (docs/methods.md).

The batched AugMix/PixMix/IPMix paths run these on the training device (CPU or CUDA, written
device-agnostic; only the CPU is tested). Images are uint8 tensors ``(n, 3, H, W)``, as PIL sees
them, so chains of ops quantise exactly where the per-sample path does. Every random choice is
drawn per image from the numpy generator handed in (vectorised, with the distributions of
:mod:`robench.augment.ops` and :mod:`robench.augment.mixing_ops`; for one image the draws even
consume the stream in the same order, which the tests use to compare on identical parameters);
per-pixel masks come from a torch generator seeded from it.

Nothing here waits for the device: every draw is made on the host first, the parameters and row
indices a call needs go to the device together in one non-blocking :func:`upload`, sizes are
known on the host (no boolean-mask indexing, ``nonzero`` or ``.item()``), and constant tensors
are made once per device. Images are grouped by op kind (and mixing operator), so a batch costs
a few dozen kernels per chain step, not one per op or image.

How each op reproduces PIL 13.0 (differences measured on 3,000 CIFAR-10 test images with the
parameters PIL draws; ``tests/augment/test_batched_equivalence.py`` asserts the right column
on 64 images, at severities 3 and 10):

==================== ===================================================== ====================
op                   tensor form                                           vs PIL (tested bound)
==================== ===================================================== ====================
equalize             per-channel histogram, PIL's integer LUT rule         exact (exact)
autocontrast (+cut)  histogram, cumulative cut-off, PIL's float64 LUT      exact (exact)
posterize, solarize, LUT / flip                                            exact (exact)
invert, mirror
translate_x/y        integer shift: PIL's sample points are pixel centres  exact (exact)
rotate, shear_x/y    PIL's coordinates, bilinear, float64 (see below)      exact (1 grey level
                                                                           on <= 1e-4 of pixels)
color, contrast,     PIL's degenerate image (fixed-point L, L mean, 3x3    exact (exact)
brightness,          SMOOTH filter in PIL's float32 order), float32 blend
sharpness            truncated, as ``ImagingBlend``
==================== ===================================================== ====================

Rotate and shear (``Image.transform(AFFINE, BILINEAR)``; ``Image.rotate`` builds the matrix with
PIL's own rounding): output pixel (x, y) samples the input at (a x' + b y' + c, d x' + e y' + f),
x' = x + 0.5, y' = y + 0.5; points outside [0, W) x [0, H) are black, points inside interpolate
bilinearly between clamped neighbours (``grid_sample``'s ``padding_mode="border"``) and are
truncated. ``grid_sample`` runs in float64 and its result is nudged up by 1e-9 before the cast,
which absorbs its weight rounding where PIL's lerp is exact (equal neighbours, zero fractions);
a pixel can then differ by 1 only where PIL's own value lies within 1e-9 below an integer.

Mixing operators repeat the numpy ones' float32 arithmetic: ``add`` is bit-identical, the masks
of ``random_pixels``/``random_elems`` come from the torch generator (same distribution), and
``multiply``'s ``pow`` differs from numpy's by up to 3.3e-7 relative: 1 grey level after the
clamped quantisation on 5e-6 of the pixels of a multiply step; after the faithful wrap-around,
where a far-out-of-range value (a dark mixing pixel to a negative power) lands depends on its
last bits, so 2e-5 (fractal pictures) to 1.5e-4 (CIFAR pictures) of those pixels wrap to another
level (measured on 1,000 pairs). The quantisers themselves are exact.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from robench.augment import mixing_ops, ops

#: per-image parameters of one op: (severity, rng, n images, (H, W)) -> array with n rows
Draw = Callable[[float, np.random.Generator, int, tuple[int, int]], np.ndarray]

# --- host -> device --------------------------------------------------------------------------


def upload(arrays: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """Host arrays -> tensors on ``device`` without ever waiting for the device.

    A plain ``torch.from_numpy(a).to("cuda")`` synchronises the stream (the host stalls until
    all queued GPU work is done), once per array. On CUDA the arrays therefore travel in one
    non-blocking copy (:func:`send_packed`); on the CPU the tensors share the arrays' memory,
    with no copy at all."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    if device.type == "cpu":
        return [torch.from_numpy(a if a.flags.writeable else a.copy()) for a in arrays]
    return send_packed(arrays, device)


def send_packed(arrays: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """Contiguous host arrays packed, 8-byte aligned, into one (pinned, on CUDA) byte buffer,
    sent with one non-blocking copy and viewed back with their dtypes and shapes, so a batch's
    parameters cost one transfer and no sync."""
    offsets = np.cumsum([0] + [-(-a.nbytes // 8) * 8 for a in arrays])
    pinned = device.type == "cuda"
    host = torch.empty(int(offsets[-1]), dtype=torch.uint8, pin_memory=pinned)
    buffer = host.numpy()
    for a, start in zip(arrays, offsets, strict=False):
        buffer[start : start + a.nbytes] = a.reshape(-1).view(np.uint8)
    sent = host.to(device, non_blocking=pinned)
    typed: dict[torch.dtype, torch.Tensor] = {}  # the buffer viewed as each dtype, once
    out = []
    for a, start in zip(arrays, offsets, strict=False):
        dtype = _TORCH_DTYPES[a.dtype]
        if dtype not in typed:
            typed[dtype] = sent.view(dtype)
        flat = typed[dtype][start // a.itemsize : start // a.itemsize + a.size]
        out.append(flat if a.ndim == 1 else flat.view(a.shape))
    return out


_TORCH_DTYPES = {
    np.dtype(t): torch.from_numpy(np.empty(0, t)).dtype
    for t in (np.bool_, np.uint8, np.int32, np.int64, np.float32, np.float64)
}


@functools.cache
def arange(n: int, device: torch.device, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """A constant ``arange`` per device, made once (never written to)."""
    return torch.arange(n, device=device, dtype=dtype)


def copy_rows_(dst: torch.Tensor, index: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """``dst.index_copy_(0, index, src)``, uint8 images moved as the widest words their rows
    allow: the same bytes, some 5x faster on the CPU, whose ``index_copy_`` goes byte by byte."""
    width = 1
    if dst.dtype == torch.uint8 and dst.is_contiguous() and src.is_contiguous():
        width = math.gcd(8, dst[0].numel(), dst.storage_offset(), src.storage_offset())
    if width == 1:
        return dst.index_copy_(0, index, src)
    word = _WORDS[width]
    dst.view(len(dst), -1).view(word).index_copy_(0, index, src.view(len(src), -1).view(word))
    return dst


_WORDS = {2: torch.int16, 4: torch.int32, 8: torch.int64}

# --- per-image magnitudes, vectorised (the ops.py helpers, one value per image) ----------------


def levels(severity: float, rng: np.random.Generator, n: int) -> np.ndarray:
    """``ops.level`` for n images: fresh magnitudes in [0.1, severity)."""
    return rng.uniform(0.1, severity, n)


def signs(rng: np.random.Generator, n: int) -> np.ndarray:
    """``ops.random_sign`` for n images."""
    return np.where(rng.uniform(size=n) > 0.5, -1, 1)


def int_par(lev: np.ndarray, vmax: float) -> np.ndarray:
    """``ops.int_par``: positive magnitudes, so ``int()`` is truncation."""
    return np.trunc(lev * vmax / 10).astype(np.int64)


def flt_par(lev: np.ndarray, vmax: float) -> np.ndarray:
    return lev * vmax / 10


# --- look-up tables ------------------------------------------------------------------------------


def histograms(index: torch.Tensor) -> torch.Tensor:
    """int64 pixel values (n, 3, H*W) -> int32 (n, 3, 256): one histogram per image channel."""
    rows = index.shape[0] * index.shape[1]
    index = index.reshape(rows, -1)
    ones = _ones_int32(index.device).expand_as(index)
    h = torch.zeros(rows, 256, dtype=torch.int32, device=index.device).scatter_add_(1, index, ones)
    return h.reshape(-1, 3, 256)


@functools.cache
def _ones_int32(device: torch.device) -> torch.Tensor:
    return torch.ones(1, dtype=torch.int32, device=device)


def apply_lut(index: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """int64 pixel values (n, 3, H*W) through per-channel uint8 tables (n, 3, 256) -> uint8."""
    return lut.gather(2, index)


def equalize_lut(h: torch.Tensor, params: None = None) -> torch.Tensor:
    """``ImageOps.equalize`` from :func:`histograms` ``h``: step = (pixels - count of the top
    value) // 255, then lut[i] = (step // 2 + pixels below i) // step, identity when step is 0,
    clipped to 255."""
    cum = h.cumsum(-1, dtype=torch.int32)  # int32 is exact: at most H * W
    total = cum[..., -1:]
    top = (cum < total).sum(-1, keepdim=True, dtype=torch.int64)  # the highest value present
    step = (total - h.gather(-1, top)) // 255
    lut = (cum - h).add_(step // 2).div_(step.clamp(min=1), rounding_mode="floor")
    return torch.where(step > 0, lut, arange(256, h.device)).clamp_(max=255).to(torch.uint8)


def autocontrast_lut(h: torch.Tensor, cut: torch.Tensor | None = None) -> torch.Tensor:
    """``ImageOps.autocontrast(img, cutoff)`` from :func:`histograms` ``h``: drop ``cut``
    pixels (int64 (n,), see :func:`_cutoff`; None: none) at each end of every channel's
    histogram, then stretch [lo, hi] to [0, 255] with PIL's float formula."""
    cut = 0 if cut is None else cut.view(-1, 1, 1)
    lo = (h.cumsum(-1, dtype=torch.int32) <= cut).sum(-1, keepdim=True)
    hi = 255 - (h.flip(-1).cumsum(-1, dtype=torch.int32) <= cut).sum(-1, keepdim=True)
    # a tensor numerator: ``255.0 / t`` would multiply by a rounded reciprocal, unlike Python
    scale = torch.full_like(lo, 255, dtype=torch.float64) / (hi - lo).clamp(min=1)
    ix = arange(256, h.device, torch.float64)
    lut = (ix * scale + -lo.double() * scale).trunc_().clamp_(0, 255)  # whole numbers
    return torch.where(hi > lo, lut, ix).to(torch.uint8)


_IDENTITY = np.arange(256)


def posterize_table(bits: np.ndarray, n: int) -> np.ndarray:
    """Host uint8 tables (n, 256): keep the top ``bits`` bits."""
    return (_IDENTITY & (~(2 ** (8 - bits) - 1) & 0xFF)[:, None]).astype(np.uint8)


def solarize_table(threshold: np.ndarray, n: int) -> np.ndarray:
    """Host uint8 tables (n, 256): invert the values at or above ``threshold``."""
    return np.where(threshold[:, None] <= _IDENTITY, 255 - _IDENTITY, _IDENTITY).astype(np.uint8)


def invert_table(params: None, n: int) -> np.ndarray:
    return np.broadcast_to((255 - _IDENTITY).astype(np.uint8), (n, 256))


# --- affine (rotate, shear, translate) -----------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def rotation_coeffs(degrees: float, width: int, height: int) -> tuple[float, ...]:
    """The inverse affine matrix ``Image.rotate(degrees)`` builds (about the centre, no expand),
    with PIL's own rounding, so the coordinates agree to the last bit."""
    angle = -math.radians(degrees % 360.0)
    a, b = round(math.cos(angle), 15), round(math.sin(angle), 15)
    d, e = round(-math.sin(angle), 15), round(math.cos(angle), 15)
    cx, cy = width / 2, height / 2
    return (a, b, a * -cx + b * -cy + 0.0 + cx, d, e, d * -cx + e * -cy + 0.0 + cy)


def affine_terms(coeffs: np.ndarray, height: int, width: int) -> np.ndarray:
    """PIL affine coefficients (n, 6) -> the per-image terms of :func:`affine_apply` (6, n),
    PIL's map in grid_sample's normalised coordinates u (pixel centre x' = W (u + 1) / 2):
    gx = a u + (b r v + (a + b r + 2 c / W - 1)), gy = d / r u + (e v + (d / r + e + 2 f / H
    - 1)), r = H / W. float64 on the host, the same IEEE operations as on the device."""
    a, b, c, d, e, f = np.asarray(coeffs, np.float64).T
    r = height / width
    br, dr = b * r, d / r
    return np.stack([a, br, a + br + 2 * c / width - 1, dr, e, dr + e + 2 * f / height - 1])


def affine_apply(x: torch.Tensor, terms: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 3, H, W), :func:`affine_terms` on x's device -> uint8, as PIL's bilinear
    ``transform`` (see the module docstring), in float64 throughout."""
    height, width = x.shape[2:]
    a, br, c0, dr, e, f0 = terms.view(6, -1, 1, 1)
    u = _grid_axis(width, x.device)
    v = _grid_axis(height, x.device).view(-1, 1)
    grid = torch.empty(len(x), height, width, 2, dtype=torch.float64, device=x.device)
    torch.add(a * u, br * v + c0, out=grid[..., 0])
    torch.add(dr * u, e * v + f0, out=grid[..., 1])
    inside = (grid >= -1).logical_and_(grid < 1)
    inside = inside[..., 0].logical_and(inside[..., 1]).unsqueeze(1)
    out = F.grid_sample(
        x.double(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.add_(1e-9).to(torch.uint8).mul_(inside)  # the cast truncates (out >= 0)


@functools.cache
def _grid_axis(size: int, device: torch.device) -> torch.Tensor:
    """Pixel centres in grid_sample's normalised coordinates, float64 (size,)."""
    return (torch.arange(size, device=device, dtype=torch.float64) * 2 + 1) / size - 1


def crops(
    x: torch.Tensor,
    index: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """``x[index[i], :, top[i] : top[i] + h, left[i] : left[i] + w]`` for every i -> (n, C, h,
    w): one index into x's view of all its h x w windows, no per-pixel index tensors."""
    return x.unfold(2, size[0], 1).unfold(3, size[1], 1)[index, :, top, left]


def shift_apply(x: torch.Tensor, pad: int, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """PIL's affine (1, 0, dx, 0, 1, dy), whose sample points fall on pixel centres:
    out(x, y) = in(x + dx, y + dy), black outside: the crop at (pad + dy, pad + dx) of the
    image zero-padded by ``pad`` >= every |offset|."""
    padded = F.pad(x, (pad,) * 4)
    return crops(padded, arange(len(x), x.device), top, left, x.shape[2:])


def rotate_coeffs(
    severity: float, rng: np.random.Generator, n: int, size: tuple[int, int]
) -> np.ndarray:
    degrees = int_par(levels(severity, rng, n), 30) * signs(rng, n)
    return np.array([rotation_coeffs(float(d), size[1], size[0]) for d in degrees]).reshape(n, 6)


def _shear(row: int) -> Draw:
    """shear_x puts the coefficient at b (row 0 of the matrix), shear_y at d (row 1)."""

    def draw(
        severity: float, rng: np.random.Generator, n: int, size: tuple[int, int]
    ) -> np.ndarray:
        coeffs = np.tile(np.array([1.0, 0, 0, 0, 1, 0]), (n, 1))
        coeffs[:, 1 + 2 * row] = flt_par(levels(severity, rng, n), 0.3) * signs(rng, n)
        return coeffs

    return draw


def _translate(axis: int) -> Draw:
    """translate_x shifts by dx (a third of the width at most), translate_y by dy."""

    def draw(
        severity: float, rng: np.random.Generator, n: int, size: tuple[int, int]
    ) -> np.ndarray:
        offsets = np.zeros((n, 2), np.int64)
        side = size[1] if axis == 0 else size[0]
        offsets[:, axis] = int_par(levels(severity, rng, n), side / 3) * signs(rng, n)
        return offsets

    return draw


# --- enhance ops: Image.blend(degenerate, image, factor) -----------------------------------------


def blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImagingBlend``: float32 ``d + f (x - d)``, clipped, truncated (factor float32 (n,))."""
    f = factor.view(-1, 1, 1, 1)
    d = degenerate.float()
    return (d + f * (x.float() - d)).clamp(0, 255).trunc().to(torch.uint8)


@functools.cache
def _grey_weights(device: torch.device) -> torch.Tensor:
    return torch.tensor([19595, 38470, 7471], dtype=torch.int32, device=device)[:, None, None]


def grey(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L: ITU-R 601-2 in 16-bit fixed point, rounded; (n, 1, H, W) int32."""
    return ((x.int() * _grey_weights(x.device)).sum(1, keepdim=True) + 0x8000) >> 16


def color(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(grey(x).expand_as(x), x, factor)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Degenerate: solid grey at the mean of L, ``int(mean + 0.5)``."""
    lum = grey(x)
    mean = (lum.sum((1, 2, 3), dtype=torch.float64) / lum[0].numel() + 0.5).floor()
    return blend(mean[:, None, None, None].expand_as(x), x, factor)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(torch.zeros_like(x), x, factor)


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Degenerate: ``ImageFilter.SMOOTH`` (3x3 [1 1 1; 1 5 1; 1 1 1] / 13, float32, + 0.5,
    truncated, rows summed bottom to top as ``ImagingFilter3x3``), border pixels unchanged."""
    k = np.float32(1) / np.float32(13)
    kc = np.float32(5) / np.float32(13)
    f = x.float()
    h, w = x.shape[2:]

    def row(r: slice, centre: np.float32) -> torch.Tensor:
        return f[:, :, r, 0 : w - 2] * k + f[:, :, r, 1 : w - 1] * centre + f[:, :, r, 2:w] * k

    ss = 0.5 + row(slice(2, h), k)
    ss = ss + row(slice(1, h - 1), kc)
    ss = ss + row(slice(0, h - 2), k)
    smooth = x.clone()
    smooth[:, :, 1 : h - 1, 1 : w - 1] = ss.clamp(0, 255).trunc().to(torch.uint8)
    return blend(smooth, x, factor)


def enhance_factors(
    severity: float, rng: np.random.Generator, n: int, size: tuple[int, int]
) -> np.ndarray:
    return (flt_par(levels(severity, rng, n), 1.8) + 0.1).astype(np.float32)


# --- the op table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorOp:
    """The tensor form of one PIL op. ``draw(severity, rng, n, (H, W))`` gives the per-image
    parameters on the host (None: the op has none). ``kind`` says how the images with an op of
    that kind are served together, so a batch costs one call per kind, not per op or image:

    * ``"table"``: ``make(params, n)`` gives host uint8 tables (n, 256), applied with the
      ``"lut"`` ones in one gather;
    * ``"lut"``: ``make(hist, params)`` gives uint8 tables (n, 3, 256) from the images'
      :func:`histograms` (made once for all of them);
    * ``"affine"``: PIL coefficients (n, 6), one ``grid_sample``;
    * ``"shift"``: integer offsets (n, 2), one crop of the zero-padded images;
    * ``"image"``: ``make(images, params)`` gives the images.

    Parameters of ``"lut"`` and ``"image"`` ops reach ``make`` as tensors on the images' device.
    """

    kind: str
    draw: Draw | None
    make: Callable[..., Any] | None = None


def _bits(severity: float, rng: np.random.Generator, n: int, size: tuple[int, int]) -> np.ndarray:
    return 4 - int_par(levels(severity, rng, n), 4)


def _threshold(
    severity: float, rng: np.random.Generator, n: int, size: tuple[int, int]
) -> np.ndarray:
    return 256 - int_par(levels(severity, rng, n), 256)


def _cutoff(severity: float, rng: np.random.Generator, n: int, size: tuple[int, int]) -> np.ndarray:
    """Pixels cut at each end: PIL's ``int(n * cutoff // 100)``, Python float floor division
    (``np.floor_divide`` is it), for a cutoff of ``10 - flt_par(level, 10)`` %."""
    cutoff = 10 - flt_par(levels(severity, rng, n), 10)
    return np.floor_divide(size[0] * size[1] * cutoff, 100).astype(np.int64)


TENSOR_OPS: dict[ops.Op, TensorOp] = {
    ops.autocontrast: TensorOp("lut", None, autocontrast_lut),
    ops.autocontrast_cut: TensorOp("lut", _cutoff, autocontrast_lut),
    ops.equalize: TensorOp("lut", None, equalize_lut),
    ops.posterize: TensorOp("table", _bits, posterize_table),
    ops.solarize: TensorOp("table", _threshold, solarize_table),
    ops.invert: TensorOp("table", None, invert_table),
    ops.rotate: TensorOp("affine", rotate_coeffs),
    ops.shear_x: TensorOp("affine", _shear(0)),
    ops.shear_y: TensorOp("affine", _shear(1)),
    ops.translate_x: TensorOp("shift", _translate(0)),
    ops.translate_y: TensorOp("shift", _translate(1)),
    ops.mirror: TensorOp("image", None, lambda x, p: x.flip(-1)),
    ops.color: TensorOp("image", enhance_factors, color),
    ops.contrast: TensorOp("image", enhance_factors, contrast),
    ops.brightness: TensorOp("image", enhance_factors, brightness),
    ops.sharpness: TensorOp("image", enhance_factors, sharpness),
}

#: the order in which the kinds' images are gathered, made and written back
_KINDS = ("table", "lut", "affine", "shift", "image")


def random_ops_(
    dst: torch.Tensor,
    rows: np.ndarray,
    op_list: Sequence[ops.Op],
    severity: float,
    rng: np.random.Generator,
    src: torch.Tensor | None = None,
) -> torch.Tensor:
    """``ops.random_op`` for the images ``rows`` of a uint8 batch, in place: ``dst[i] =
    op_i(src[i % len(src)])`` with an op drawn uniformly per image and its parameters per image
    (``src`` defaults to ``dst``, a shorter one repeats without a copy; ``rows`` distinct).

    All draws are made on the host first; the row indices and every parameter go to the device
    in one :func:`upload`; the images are gathered once, sorted by kind, each kind is served by
    one call (see :class:`TensorOp`) and the results are written back with one ``index_copy_``.
    """
    src = dst if src is None else src
    choice = rng.integers(len(op_list), size=len(rows))
    if not choice.size:
        return dst
    size = (dst.shape[2], dst.shape[3])
    picks: dict[str, list[tuple[TensorOp, np.ndarray, Any]]] = {kind: [] for kind in _KINDS}
    for j, op in enumerate(op_list):
        picked = rows[choice == j]
        if picked.size:
            top = TENSOR_OPS[op]
            params = None if top.draw is None else top.draw(severity, rng, picked.size, size)
            picks[top.kind].append((top, picked, params))
    order = np.concatenate([picked for kind in _KINDS for _, picked, _ in picks[kind]])
    host: dict[Any, np.ndarray] = {"order": order, "source": order % len(src)}
    if picks["table"]:
        host["table"] = np.concatenate([top.make(p, len(r)) for top, r, p in picks["table"]])
    for kind in ("lut", "image"):
        host |= {(kind, i): p for i, (_, _, p) in enumerate(picks[kind]) if p is not None}
    if picks["affine"]:
        host["affine"] = affine_terms(np.concatenate([p for *_, p in picks["affine"]]), *size)
    if picks["shift"]:
        offsets = np.concatenate([p for *_, p in picks["shift"]])
        pad = int(np.abs(offsets).max())
        host |= {"shift": pad + offsets[:, ::-1].T}  # (top, left) of each crop
    sent = dict(zip(host, upload(list(host.values()), dst.device), strict=True))

    images = src.index_select(0, sent["source"])
    counts = [sum(len(r) for _, r, _ in picks[kind]) for kind in _KINDS]
    by_kind = dict(zip(_KINDS, images.split(counts), strict=True))
    results: list[torch.Tensor] = []
    if picks["table"] or picks["lut"]:
        both = images[: counts[0] + counts[1]]
        index = both.reshape(len(both), 3, -1).long()  # pixel values, for histograms and tables
        tables = [sent["table"][:, None].expand(-1, 3, -1)] if picks["table"] else []
        if picks["lut"]:
            hist = histograms(index[counts[0] :]).split([len(r) for _, r, _ in picks["lut"]])
            for i, ((top, _, _), h) in enumerate(zip(picks["lut"], hist, strict=True)):
                tables.append(top.make(h, sent.get(("lut", i))))
        lut = torch.cat(tables) if len(tables) > 1 else tables[0]
        results.append(apply_lut(index, lut).view(both.shape))
    if picks["affine"]:
        results.append(affine_apply(by_kind["affine"], sent["affine"]))
    if picks["shift"]:
        results.append(shift_apply(by_kind["shift"], pad, *sent["shift"]))
    parts = by_kind["image"].split([len(r) for _, r, _ in picks["image"]])
    for i, ((top, _, _), part) in enumerate(zip(picks["image"], parts, strict=True)):
        results.append(top.make(part, sent.get(("image", i))))
    return copy_rows_(dst, sent["order"], torch.cat(results) if len(results) > 1 else results[0])


# --- pixel mixing operators (float32 [0, 1], per-image parameters) --------------------------------

MixDraw = Callable[[float, np.random.Generator, int], list[np.ndarray]]
MixApply = Callable[
    [torch.Tensor, torch.Tensor, Sequence[torch.Tensor], torch.Generator], torch.Tensor
]


@dataclass(frozen=True)
class TensorMix:
    """A pixel mixing operator in two halves, so that a caller can send the parameters of all
    its groups of images in one :func:`upload`: ``draw(beta, rng, n)`` makes the per-image
    parameters on the host (float32 (n,) arrays), ``apply(x1, x2, params, gen)`` mixes float
    images with them on the device (each (n, 1, 1, 1)), in place: it may overwrite both inputs
    and returns the mix, x1 itself for the built-in operators (no new buffers). Calling it,
    ``mix(x1, x2, beta, rng, gen)``, does both on copies.

    :meth:`apply_any` also takes uint8 images (the float ones x 255, as :func:`to_float` reads
    them): a ``selects`` operator (every output element is x1's or x2's) runs on the bytes as
    they are, the others on :func:`to_float` of them."""

    draw: MixDraw
    apply: MixApply
    selects: bool = False

    def __call__(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        beta: float,
        rng: np.random.Generator,
        gen: torch.Generator,
    ) -> torch.Tensor:
        params = per_image(self.draw(beta, rng, len(x1)), x1)
        return self.apply(x1.clone(), x2.clone(), params, gen)

    def apply_any(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        params: Sequence[torch.Tensor],
        gen: torch.Generator,
    ) -> torch.Tensor:
        """``apply`` on float32 or uint8 images (either input; float32 out unless both are
        uint8 and the operator selects)."""
        if self.selects and x1.dtype == x2.dtype:
            return self.apply(x1, x2, params, gen)
        return self.apply(_as_float(x1), _as_float(x2), params, gen)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return to_float(x) if x.dtype == torch.uint8 else x


def sample_ab(beta: float, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``mixing_ops.sample_ab`` for n images (float32 (n,) each)."""
    low = rng.random(n) < 0.5
    a = rng.beta(np.where(low, beta, 1.0), np.where(low, 1.0, beta))
    b = rng.beta(1.0, beta, n)
    return np.where(low, a, 1 + a).astype(np.float32), np.where(low, b, -b).astype(np.float32)


def per_image(values: Sequence[np.ndarray], like: torch.Tensor) -> list[torch.Tensor]:
    """Float32 values per image, each (n, 1, 1, 1) on ``like``'s device to broadcast, in one
    :func:`upload`."""
    sent = upload([np.asarray(v, np.float32) for v in values], like.device)
    return [v.view(-1, 1, 1, 1) for v in sent]


def _draw_ab(beta: float, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return list(sample_ab(beta, rng, n))


def _draw_threshold(beta: float, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [rng.random(n).astype(np.float32)]


def _add(
    x1: torch.Tensor, x2: torch.Tensor, ab: Sequence[torch.Tensor], gen: torch.Generator
) -> torch.Tensor:
    a, b = ab
    # (a (2 x1 - 1) + b (2 x2 - 1) + 1) / 2, in place, in the reference's order
    return x1.mul_(2).sub_(1).mul_(a).add_(x2.mul_(2).sub_(1).mul_(b)).add_(1).div_(2)


def _multiply(
    x1: torch.Tensor, x2: torch.Tensor, ab: Sequence[torch.Tensor], gen: torch.Generator
) -> torch.Tensor:
    a, b = ab
    return x1.mul_(2).pow_(a).mul_(x2.mul_(2).clamp_(min=1e-37).pow_(b)).div_(2)


def _random_mask(channels: int | None) -> MixApply:
    """x1 where a uniform from ``gen`` lies below the image's threshold, else x2; one draw per
    pixel (``channels=1``) or per element (None: every channel)."""

    def apply(
        x1: torch.Tensor, x2: torch.Tensor, thr: Sequence[torch.Tensor], gen: torch.Generator
    ) -> torch.Tensor:
        shape = (len(x1), channels or x1.shape[1], *x1.shape[2:])
        return select_(torch.rand(shape, generator=gen, device=x1.device) < thr[0], x1, x2)

    return apply


def select_(mask: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """``torch.where(mask, x1, x2)`` into x1. For uint8 as ``x2 + mask (x1 - x2)`` modulo 256,
    which is exact and some 20x faster on the CPU, where ``where`` is not vectorised for bytes."""
    if x1.dtype == torch.uint8:
        return x1.sub_(x2).mul_(mask).add_(x2)
    return torch.where(mask, x1, x2, out=x1)


add = TensorMix(_draw_ab, _add)
multiply = TensorMix(_draw_ab, _multiply)
random_pixels = TensorMix(_draw_threshold, _random_mask(1), selects=True)
random_elems = TensorMix(_draw_threshold, _random_mask(None), selects=True)

TENSOR_MIXINGS: dict[mixing_ops.MixOp, TensorMix] = {
    mixing_ops.add: add,
    mixing_ops.multiply: multiply,
    mixing_ops.random_pixels: random_pixels,
    mixing_ops.random_elems: random_elems,
}


@dataclass(frozen=True)
class MixGroups:
    """Images sorted into consecutive groups, group i mixed by ``mixes[i]``: all groups'
    parameters are drawn on the host first (in group order, as separate calls would draw
    them), so the caller can send them in its own :func:`upload` (``host``), then
    :meth:`apply` mixes group by group on the device."""

    mixes: Sequence[TensorMix]
    sizes: list[int]
    params: list[list[np.ndarray]]

    @classmethod
    def draw(
        cls, mixes: Sequence[TensorMix], sizes: list[int], beta: float, rng: np.random.Generator
    ) -> MixGroups:
        return cls(
            mixes, sizes, [mix.draw(beta, rng, n) for mix, n in zip(mixes, sizes, strict=True)]
        )

    def host(self) -> list[np.ndarray]:
        return [np.asarray(v, np.float32) for p in self.params for v in p]

    def apply(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        sent: Sequence[torch.Tensor],
        gen: torch.Generator,
        lower: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x1, x2 sorted by group, float32 or uint8 (see :meth:`TensorMix.apply_any`); ``sent``:
        :meth:`host` on the device -> the mixed images, written into x1 (x2 may be overwritten
        too). uint8 x1 takes a float mix back with ``lower`` (a quantizer)."""
        values = iter(sent)
        groups = zip(
            self.mixes, self.params, x1.split(self.sizes), x2.split(self.sizes), strict=True
        )
        for mix, params, a, b in groups:
            p = [next(values).view(-1, 1, 1, 1) for _ in params]
            if not len(a):
                continue
            mixed = mix.apply_any(a, b, p, gen)
            if mixed.dtype != a.dtype:
                assert lower is not None, "uint8 x1 needs a quantizer"
                mixed = lower(mixed)
            if mixed is not a:
                a.copy_(mixed)
        return x1


def quantize_faithful(p: torch.Tensor) -> torch.Tensor:
    """``mixing_ops.quantize_faithful`` on a float32 batch: x 255, truncate, wrap mod 256
    (non-finite -> 0). Every float32 of magnitude >= 2**31 is a multiple of 256, so clamping to
    +-2**32 keeps every result, and the int64 cast (which truncates) holds the wrapped value in
    its low byte (two's complement: -3 -> 253; NaN's is 0)."""
    return (p.float() * 255).clamp_(-(2**32), 2**32).long().to(torch.uint8)


def quantize_clamped(p: torch.Tensor) -> torch.Tensor:
    """``mixing_ops.quantize_clamped``: clamp to [0, 1], x 255, truncate."""
    return (p.clamp(0, 1) * 255).to(torch.uint8)


TENSOR_QUANTIZERS: dict[Callable[..., np.ndarray], Callable[[torch.Tensor], torch.Tensor]] = {
    mixing_ops.quantize_faithful: quantize_faithful,
    mixing_ops.quantize_clamped: quantize_clamped,
}


def torch_generator(rng: np.random.Generator, device: torch.device) -> torch.Generator:
    """A torch generator on ``device`` seeded from the step's numpy generator (per-pixel masks)."""
    return torch.Generator(device=device).manual_seed(int(rng.integers(2**63)))


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] images (uint8 / 255, as the trainer makes them) back to uint8."""
    return (x * 255).round_().clamp_(0, 255).to(torch.uint8)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1], exactly as ``to_float_chw`` (``ToTensor``)."""
    return x.float().div_(255)


def mix_chains(
    x: torch.Tensor, chains: torch.Tensor, alpha: float, rng: np.random.Generator
) -> torch.Tensor:
    """``mixing_ops.augment_and_mix`` for a batch: x uint8 (n, 3, H, W), chains uint8
    (width, n, 3, H, W) -> ``(1 - m) x + m sum_i w_i chain_i``, float32 in [0, 1], with
    Dirichlet(alpha) weights and a Beta(alpha, alpha) skip weight per image."""
    width, n = chains.shape[:2]
    w = rng.dirichlet([alpha] * width, size=n).astype(np.float32)
    w, m = upload([w, rng.beta(alpha, alpha, n).astype(np.float32)], x.device)
    m = m.view(-1, 1, 1, 1)
    # one contraction (the reference sums chain by chain: a float32 rounding apart)
    acc = torch.einsum("nk,kn...->n...", w, chains.float()).div_(255)
    return to_float(x).mul_(1 - m).add_(acc.mul_(m)).clamp_(0, 1)
