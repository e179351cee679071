"""Batched tensor forms of the PIL image ops and the pixel mixing operators (spec methods.md §1.2).

The batched AugMix/PixMix/IPMix paths run these on the training device (CPU or CUDA, written
device-agnostic; only the CPU is tested). Images are uint8 tensors ``(n, 3, H, W)``, as PIL sees
them, so chains of ops quantise exactly where the per-sample path does. Every random choice is
drawn per image from the numpy generator handed in (vectorised, with the distributions of
:mod:`robench.augment.ops` and :mod:`robench.augment.mixing_ops`; for one image the draws even
consume the stream in the same order, which the tests use to compare on identical parameters);
per-pixel masks come from a torch generator seeded from it.

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

IDENTITY = torch.arange(256)


def histograms(x: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 3, H, W) -> int32 (n, 3, 256): one histogram per image channel."""
    rows = x.shape[0] * x.shape[1]
    index = x.reshape(rows, -1).long()
    ones = torch.ones(1, dtype=torch.int32, device=x.device).expand_as(index)
    h = torch.zeros(rows, 256, dtype=torch.int32, device=x.device).scatter_add_(1, index, ones)
    return h.reshape(*x.shape[:2], 256)


def apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 3, H, W) through per-channel uint8 tables (n, 3, 256) -> uint8."""
    n, c = x.shape[:2]
    return lut.gather(2, x.reshape(n, c, -1).long()).reshape(x.shape)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return IDENTITY.to(x.device)


def equalize_lut(x: torch.Tensor) -> torch.Tensor:
    """``ImageOps.equalize``: step = (pixels - count of the top value) // 255, then
    lut[i] = (step // 2 + pixels below i) // step, identity when step is 0, clipped to 255."""
    h = histograms(x).long()
    top = 255 - (h.flip(-1) > 0).long().argmax(-1, keepdim=True)
    step = (h.sum(-1, keepdim=True) - h.gather(-1, top)) // 255
    below = h.cumsum(-1) - h
    lut = (step // 2 + below) // step.clamp(min=1)
    return torch.where(step > 0, lut, _identity(x)).clamp(max=255).to(torch.uint8)


def autocontrast_lut(x: torch.Tensor, cutoff: np.ndarray | None = None) -> torch.Tensor:
    """``ImageOps.autocontrast(img, cutoff)``: drop ``cutoff`` % of the pixels at each end of
    every channel's histogram, then stretch [lo, hi] to [0, 255] with PIL's float formula."""
    h = histograms(x)
    if cutoff is None:
        cut = torch.zeros(len(x), 1, 1, dtype=torch.long, device=x.device)
    else:  # PIL: int(n * cutoff // 100), Python float floor division (np.floor_divide is it)
        pixels = x.shape[2] * x.shape[3]
        cut_np = np.floor_divide(pixels * np.asarray(cutoff, np.float64), 100).astype(np.int64)
        cut = torch.from_numpy(cut_np).to(x.device)[:, None, None]
    lo = (h.cumsum(-1) <= cut).sum(-1, keepdim=True)
    hi = 255 - (h.flip(-1).cumsum(-1) <= cut).sum(-1, keepdim=True)
    # a tensor numerator: ``255.0 / t`` would multiply by a rounded reciprocal, unlike Python
    scale = torch.full_like(lo, 255, dtype=torch.float64) / (hi - lo).clamp(min=1)
    ix = _identity(x).double()
    lut = torch.trunc(ix * scale + -lo.double() * scale).clamp(0, 255).long()
    return torch.where(hi > lo, lut, _identity(x)).to(torch.uint8)


def _per_channel(table: torch.Tensor) -> torch.Tensor:
    """One uint8 table (n, 256) for each of the 3 channels."""
    return table.to(torch.uint8)[:, None].expand(-1, 3, -1)


def posterize_lut(bits: np.ndarray, device: torch.device) -> torch.Tensor:
    mask = torch.from_numpy(~(2 ** (8 - bits) - 1) & 0xFF).to(device)
    return _per_channel(IDENTITY.to(device) & mask[:, None])


def solarize_lut(threshold: np.ndarray, device: torch.device) -> torch.Tensor:
    ix = IDENTITY.to(device)
    thr = torch.from_numpy(threshold).to(device)[:, None]
    return _per_channel(torch.where(ix >= thr, 255 - ix, ix))


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


def affine(x: torch.Tensor, coeffs: np.ndarray) -> torch.Tensor:
    """uint8 (n, 3, H, W), PIL affine coefficients (n, 6) -> uint8, as PIL's bilinear
    ``transform`` (see the module docstring), in float64 throughout."""
    height, width = x.shape[2:]
    a, b, c, d, e, f = (
        torch.from_numpy(np.asarray(coeffs, np.float64)).to(x.device).T[:, :, None, None]
    )
    # PIL's map in grid_sample's normalised coordinates u (pixel centre x' = W (u + 1) / 2)
    r = height / width
    u = (torch.arange(width, device=x.device, dtype=torch.float64) * 2 + 1) / width - 1
    v = ((torch.arange(height, device=x.device, dtype=torch.float64) * 2 + 1) / height - 1)[:, None]
    gx = a * u + (b * r * v + (a + b * r + 2 * c / width - 1))
    gy = d / r * u + (e * v + (d / r + e + 2 * f / height - 1))
    inside = ((gx >= -1) & (gx < 1) & (gy >= -1) & (gy < 1))[:, None]
    grid = torch.stack([gx, gy], -1)
    out = F.grid_sample(
        x.double(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.add_(1e-9).to(torch.uint8).mul_(inside)  # the cast truncates (out >= 0)


def shift(x: torch.Tensor, offsets: np.ndarray) -> torch.Tensor:
    """uint8 (n, 3, H, W), integer (dx, dy) per image -> uint8: PIL's affine (1, 0, dx, 0, 1,
    dy), whose sample points fall on pixel centres: out(x, y) = in(x + dx, y + dy), black
    outside. One slice copy per distinct offset (at most 4 S / 3 + 1 of them)."""
    out = torch.zeros_like(x)
    height, width = x.shape[2:]
    offsets = np.asarray(offsets, np.int64)
    for dx, dy in np.unique(offsets, axis=0):
        rows = torch.from_numpy(np.flatnonzero((offsets == (dx, dy)).all(1))).to(x.device)
        src = x[:, :, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)]
        dst = out[:, :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)]
        dst.index_copy_(0, rows, src.index_select(0, rows))
    return out


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


def blend(degenerate: torch.Tensor, x: torch.Tensor, factor: np.ndarray) -> torch.Tensor:
    """``ImagingBlend``: float32 ``d + f (x - d)``, clipped, truncated."""
    f = torch.from_numpy(np.asarray(factor, np.float32)).to(x.device)[:, None, None, None]
    d = degenerate.float()
    return (d + f * (x.float() - d)).clamp(0, 255).trunc().to(torch.uint8)


def grey(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L: ITU-R 601-2 in 16-bit fixed point, rounded; (n, 1, H, W) int32."""
    w = torch.tensor([19595, 38470, 7471], dtype=torch.int32, device=x.device)[:, None, None]
    return ((x.int() * w).sum(1, keepdim=True) + 0x8000) >> 16


def color(x: torch.Tensor, factor: np.ndarray) -> torch.Tensor:
    return blend(grey(x).expand_as(x), x, factor)


def contrast(x: torch.Tensor, factor: np.ndarray) -> torch.Tensor:
    """Degenerate: solid grey at the mean of L, ``int(mean + 0.5)``."""
    lum = grey(x)
    mean = (lum.sum((1, 2, 3), dtype=torch.float64) / lum[0].numel() + 0.5).floor()
    return blend(mean[:, None, None, None].expand_as(x), x, factor)


def brightness(x: torch.Tensor, factor: np.ndarray) -> torch.Tensor:
    return blend(torch.zeros_like(x), x, factor)


def sharpness(x: torch.Tensor, factor: np.ndarray) -> torch.Tensor:
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
    return flt_par(levels(severity, rng, n), 1.8) + 0.1


# --- the op table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorOp:
    """The tensor form of one PIL op. ``draw(severity, rng, n, (H, W))`` gives the per-image
    parameters (None: the op has none) and ``make(x, params)``, if set, turns them into the
    images (``kind="image"``) or into what a grouped kind takes. Grouped kinds serve every image
    whose op is of that kind in one call: ``"lut"`` (tables (n, 3, 256)), ``"affine"``
    (coefficients (n, 6)), ``"shift"`` (integer offsets (n, 2))."""

    kind: str
    draw: Draw | None
    make: Callable[[torch.Tensor, Any], Any] | None = None


GROUPED: dict[str, Callable[[torch.Tensor, Any], torch.Tensor]] = {
    "lut": apply_lut,
    "affine": affine,
    "shift": shift,
}


def _bits(severity: float, rng: np.random.Generator, n: int, size: tuple[int, int]) -> np.ndarray:
    return 4 - int_par(levels(severity, rng, n), 4)


def _threshold(
    severity: float, rng: np.random.Generator, n: int, size: tuple[int, int]
) -> np.ndarray:
    return 256 - int_par(levels(severity, rng, n), 256)


def _cutoff(severity: float, rng: np.random.Generator, n: int, size: tuple[int, int]) -> np.ndarray:
    return 10 - flt_par(levels(severity, rng, n), 10)


def _invert_lut(x: torch.Tensor, params: None) -> torch.Tensor:
    return _per_channel((255 - _identity(x)).expand(len(x), -1))


TENSOR_OPS: dict[ops.Op, TensorOp] = {
    ops.autocontrast: TensorOp("lut", None, lambda x, p: autocontrast_lut(x)),
    ops.autocontrast_cut: TensorOp("lut", _cutoff, autocontrast_lut),
    ops.equalize: TensorOp("lut", None, lambda x, p: equalize_lut(x)),
    ops.posterize: TensorOp("lut", _bits, lambda x, p: posterize_lut(p, x.device)),
    ops.solarize: TensorOp("lut", _threshold, lambda x, p: solarize_lut(p, x.device)),
    ops.invert: TensorOp("lut", None, _invert_lut),
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


def _cat(parts: list[Any]) -> Any:
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


def random_ops_(
    dst: torch.Tensor,
    rows: np.ndarray,
    op_list: Sequence[ops.Op],
    severity: float,
    rng: np.random.Generator,
    src: torch.Tensor | None = None,
) -> torch.Tensor:
    """``ops.random_op`` for the images ``rows`` of a uint8 batch, in place: ``dst[i] =
    op_i(src[i])`` with an op drawn uniformly per image and its parameters per image (``src``
    defaults to ``dst``). Images are grouped by the kind of their op, so a batch costs one LUT
    gather, one ``grid_sample``, one shift and one call per other op, not one call per image."""
    src = dst if src is None else src
    choice = rng.integers(len(op_list), size=len(rows))
    size = (dst.shape[2], dst.shape[3])
    groups: dict[str, list[tuple[torch.Tensor, Any]]] = {kind: [] for kind in GROUPED}
    results: list[tuple[torch.Tensor, torch.Tensor]] = []
    for j, op in enumerate(op_list):
        picked = rows[choice == j]
        if not picked.size:
            continue
        idx = torch.from_numpy(picked).to(dst.device)
        top = TENSOR_OPS[op]
        params = None if top.draw is None else top.draw(severity, rng, picked.size, size)
        if top.make is not None:
            params = top.make(src.index_select(0, idx), params)
        if top.kind == "image":
            results.append((idx, params))
        else:
            groups[top.kind].append((idx, params))
    for kind, members in groups.items():
        if members:
            idx = torch.cat([i for i, _ in members])
            params = _cat([p for _, p in members])
            results.append((idx, GROUPED[kind](src.index_select(0, idx), params)))
    for idx, images in results:  # written last: src may be dst
        dst.index_copy_(0, idx, images)
    return dst


# --- pixel mixing operators (float32 [0, 1], per-image parameters) --------------------------------

TensorMix = Callable[
    [torch.Tensor, torch.Tensor, float, np.random.Generator, torch.Generator], torch.Tensor
]


def sample_ab(beta: float, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``mixing_ops.sample_ab`` for n images (float32 (n,) each)."""
    low = rng.random(n) < 0.5
    a = rng.beta(np.where(low, beta, 1.0), np.where(low, 1.0, beta))
    b = rng.beta(1.0, beta, n)
    return np.where(low, a, 1 + a).astype(np.float32), np.where(low, b, -b).astype(np.float32)


def _per_image(v: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """One float32 value per image, (n, 1, 1, 1) on ``like``'s device, to broadcast."""
    return torch.from_numpy(np.asarray(v, np.float32)).to(like.device)[:, None, None, None]


def add(
    x1: torch.Tensor, x2: torch.Tensor, beta: float, rng: np.random.Generator, gen: torch.Generator
) -> torch.Tensor:
    a, b = (_per_image(v, x1) for v in sample_ab(beta, rng, len(x1)))
    # (a (2 x1 - 1) + b (2 x2 - 1) + 1) / 2, in place, in the reference's order
    return (x1 * 2).sub_(1).mul_(a).add_((x2 * 2).sub_(1).mul_(b)).add_(1).div_(2)


def multiply(
    x1: torch.Tensor, x2: torch.Tensor, beta: float, rng: np.random.Generator, gen: torch.Generator
) -> torch.Tensor:
    a, b = (_per_image(v, x1) for v in sample_ab(beta, rng, len(x1)))
    return (x1 * 2).pow_(a).mul_((x2 * 2).clamp_(min=1e-37).pow_(b)).div_(2)


def _random_mask(
    x1: torch.Tensor,
    x2: torch.Tensor,
    rng: np.random.Generator,
    gen: torch.Generator,
    channels: int,
) -> torch.Tensor:
    thr = _per_image(rng.random(len(x1)), x1)
    shape = (len(x1), channels, *x1.shape[2:])
    mask = torch.rand(shape, generator=gen, device=x1.device) < thr
    return torch.where(mask, x1, x2)


def random_pixels(
    x1: torch.Tensor, x2: torch.Tensor, beta: float, rng: np.random.Generator, gen: torch.Generator
) -> torch.Tensor:
    return _random_mask(x1, x2, rng, gen, 1)


def random_elems(
    x1: torch.Tensor, x2: torch.Tensor, beta: float, rng: np.random.Generator, gen: torch.Generator
) -> torch.Tensor:
    return _random_mask(x1, x2, rng, gen, x1.shape[1])


TENSOR_MIXINGS: dict[mixing_ops.MixOp, TensorMix] = {
    mixing_ops.add: add,
    mixing_ops.multiply: multiply,
    mixing_ops.random_pixels: random_pixels,
    mixing_ops.random_elems: random_elems,
}


def quantize_faithful(p: torch.Tensor) -> torch.Tensor:
    """``mixing_ops.quantize_faithful`` on a float32 batch: x 255, truncate, wrap mod 256
    (non-finite -> 0). Every float32 of magnitude >= 2**32 is a multiple of 256, so only smaller
    values need wrapping, which their int64 low byte does (two's complement: -3 -> 253)."""
    v = (p.float() * 255).trunc_()
    return v.masked_fill_(v.abs() >= 2**32, 0).long().to(torch.uint8)


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
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


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
    w = torch.from_numpy(rng.dirichlet([alpha] * width, size=n).astype(np.float32))
    m = _per_image(rng.beta(alpha, alpha, n), x)
    # one contraction (the reference sums chain by chain: a float32 rounding apart)
    acc = torch.einsum("nk,kn...->n...", w.to(x.device), chains.float()) / 255
    return ((1 - m) * to_float(x) + m * acc).clamp_(0, 1)
