"""``ipmix``: IPMix as the official ``cifar.py`` / ``IPMix_utils.py`` do it (``hzlsaber/IPMix``).

Paper (Huang et al., NeurIPS 2023, arXiv:2310.04780 v5) vs code differences
(docs/methods.md#ipmix) are options whose defaults are the code's, since the code produced the
released numbers:

* ``min_chain_length``: chain length uniform on {min_chain_length, ..., t}. Code: 0 (a quarter
  of the chains are the identity); paper Algorithm 1: 1.
* ``p_source``: what a patch step mixes in. ``"mixing"`` (code ``cifar.py``): always the mixing
  picture. ``"mixing_or_op"`` (paper Algorithm 1, ``imagenet.py``): the mixing picture or, with
  p = 1/2, one random image op applied to the original image.
* ``quantize``: the mixed patch goes back to uint8. ``"faithful"`` (code): x 255, truncate,
  wrap modulo 256, no clamp, exactly as torch's ``.byte()`` inside ``ToPILImage`` (see
  :func:`~robench.augment.mixing_ops.quantize_faithful`); ``"clamped"``: clamp to [0, 1] first.
* The paper's Beta-mask patch rule (its section 4.1) is not offered: the paper gives no Beta
  parameters for it and its own Algorithm 1 uses the four operators the code uses.

ImageNet settings (``imagenet.py``): ``patch_sizes=[4, 8, 16, 32, 64, 224]``, ``all_ops=True``
(15 ops incl. color/contrast/brightness/sharpness and cutoff autocontrast), ``beta=4``,
``severity=1``, ``p_source="mixing_or_op"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from robench.augment.base import AUGMENTATIONS, to_float_chw
from robench.augment.mixing_ops import (
    IPMIX_MIXINGS,
    augment_and_mix,
    quantize_clamped,
    quantize_faithful,
)
from robench.augment.ops import IPMIX_ALL_OPS, IPMIX_OPS, random_op
from robench.augment.tensor_ops import (
    TENSOR_MIXINGS,
    TENSOR_QUANTIZERS,
    MixGroups,
    copy_rows_,
    mix_chains,
    random_ops_,
    select_,
    torch_generator,
    upload,
)
from robench.augment.views import MixViews
from robench.errors import ConfigError

QUANTIZERS = {"faithful": quantize_faithful, "clamped": quantize_clamped}
P_SOURCES = ("mixing", "mixing_or_op")


def sample_chains(
    t: int, min_length: int, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """(patch branch?, number of steps) for n chains: P-level or image-level with p = 1/2, then
    a length uniform on {min_length, ..., t}. At the defaults P(identity) = 1/4, mean 1.5."""
    patch = rng.random(n) < 0.5
    return patch, rng.integers(min_length, t + 1, size=n)


def sample_chain(t: int, min_length: int, rng: np.random.Generator) -> tuple[bool, int]:
    """One chain (the per-sample path)."""
    patch, length = sample_chains(t, min_length, rng, 1)
    return bool(patch[0]), int(length[0])


def patch_boxes(
    height: int, width: int, sizes: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(top, left, h, w) of n patches inside the image, patch i an s_i x s_i square, or with
    p = 1/2 a "scar" with independent sides uniform on {2, ..., s_i}."""
    left = rng.integers(width - sizes + 1)
    top = rng.integers(height - sizes + 1)
    scar = ~(rng.random(len(sizes)) > 0.5)
    h, w = sizes.copy(), sizes.copy()
    if scar.any():
        w[scar], h[scar] = rng.integers(2, sizes[scar, None] + 1, size=(int(scar.sum()), 2)).T
    return top, left, h, w


def patch_box(
    height: int, width: int, size: int, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """One patch (the per-sample path)."""
    top, left, h, w = patch_boxes(height, width, np.array([size]), rng)
    return int(top[0]), int(left[0]), int(h[0]), int(w[0])


@AUGMENTATIONS.register(
    "ipmix", description="IPMix: image-, patch- and pixel-level mixing with fractals, JSD loss"
)
class IPMix(MixViews):
    """IPMix: k chains, each (p = 1/2) 0..t PIL ops or 0..t patch-mixing steps with the mixing
    picture (patch side from ``patch_sizes``, square or scar, one of add / multiply / random
    pixels / random elements at ``beta``); chains mixed with Dirichlet(1) weights and blended
    with the clean image by a Beta(1, 1) weight, as AugMix does.

    Defaults are the official CIFAR code's: k = 3, t = 3, beta = 3, severity 3, the 10 IPMix
    ops, patch sides {4, 8, 16, 32}, JSD on (clean + 2 views sharing one mixing picture, weight
    12). Paper-vs-code options: see the module docstring. ``path``: ``"batch"`` (default:
    tensor ops on the training device, equivalent in distribution and faster, with the same
    ``quantize`` rule) or ``"sample"`` (the PIL reference, in DataLoader workers); see
    :mod:`robench.augment.views`.
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int = 32,
        k: int = 3,
        t: int = 3,
        beta: float = 3,
        severity: float = 3,
        patch_sizes: Sequence[int] = (4, 8, 16, 32),
        all_ops: bool = False,
        min_chain_length: int = 0,
        p_source: str = "mixing",
        quantize: str = "faithful",
        mixing_set: str = "fractals",
        mixing_count: int = 1000,
        jsd: bool = True,
        jsd_weight: float = 12.0,
        padding: int = 4,
        path: str = "batch",
    ) -> None:
        patch_sizes = tuple(int(s) for s in patch_sizes)
        if k < 1 or t < 0 or not 0 <= min_chain_length <= t or beta <= 0:
            raise ConfigError(
                f"ipmix needs k >= 1, 0 <= min_chain_length <= t, beta > 0; got k={k}, t={t}, "
                f"min_chain_length={min_chain_length}, beta={beta}"
            )
        if not 0 < severity <= 10:
            raise ConfigError(f"ipmix severity must be in (0, 10], got {severity}")
        if not patch_sizes or not all(2 <= s <= image_size for s in patch_sizes):
            raise ConfigError(
                f"ipmix patch_sizes must lie in [2, image_size={image_size}], got {patch_sizes}"
            )
        if p_source not in P_SOURCES:
            raise ConfigError(f"ipmix p_source must be one of {P_SOURCES}, got {p_source!r}")
        if quantize not in QUANTIZERS:
            raise ConfigError(f"ipmix quantize must be one of {list(QUANTIZERS)}, got {quantize!r}")
        super().__init__(
            num_classes,
            image_size,
            jsd=jsd,
            jsd_weight=jsd_weight,
            padding=padding,
            path=path,
            mixing_set=mixing_set,
            mixing_count=mixing_count,
        )
        self.k, self.t, self.beta, self.severity = k, t, beta, severity
        self.patch_sizes = patch_sizes
        self.all_ops = bool(all_ops)
        self.ops = IPMIX_ALL_OPS if self.all_ops else IPMIX_OPS
        self.min_chain_length = min_chain_length
        self.p_source = p_source
        self.quantize = quantize

    def patch_step(
        self, y: np.ndarray, x: np.ndarray, mixing: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """One P-level step on the chain state ``y`` (uint8 HWC); ``x`` is the chain's input."""
        size = self.patch_sizes[rng.integers(len(self.patch_sizes))]
        op = IPMIX_MIXINGS[rng.integers(len(IPMIX_MIXINGS))]
        if self.p_source == "mixing_or_op" and rng.random() <= 0.5:
            mixing = random_op(x, self.ops, self.severity, rng)
        top, left, h, w = patch_box(*y.shape[:2], size, rng)
        box = np.s_[top : top + h, left : left + w]
        mixed = op(to_float_chw(y[box]), to_float_chw(mixing[box]), self.beta, rng)
        out = y.copy()
        out[box] = QUANTIZERS[self.quantize](mixed)
        return out

    def chain(self, x: np.ndarray, mixing: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        patch, steps = sample_chain(self.t, self.min_chain_length, rng)
        y = x
        for _ in range(steps):
            if patch:
                y = self.patch_step(y, x, mixing, rng)
            else:
                y = random_op(y, self.ops, self.severity, rng)
        return y

    def view(
        self, x: np.ndarray, mixing: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray:
        assert mixing is not None  # MixViews always draws one: mixing_set is set
        return augment_and_mix(x, lambda img, r: self.chain(img, mixing, r), self.k, 1.0, rng)

    def batch_views(
        self, x: torch.Tensor, mixing: torch.Tensor | None, rng: np.random.Generator
    ) -> torch.Tensor:
        """All k chains of all images at once (chain-major); step s advances the chains longer
        than s: image-level ones by one random op, patch-level ones by one patch step."""
        assert mixing is not None  # MixViews always draws one: mixing_set is set
        chains = x.repeat(self.k, 1, 1, 1)
        patch, steps = sample_chains(self.t, self.min_chain_length, rng, len(chains))
        gen = torch_generator(rng, x.device)
        for step in range(self.t):
            active = steps > step
            random_ops_(chains, np.flatnonzero(active & ~patch), self.ops, self.severity, rng)
            rows = np.flatnonzero(active & patch)
            if rows.size:
                self.patch_steps_(chains, rows, x, mixing, rng, gen)
        return mix_chains(x, chains.view(self.k, *x.shape), 1.0, rng)

    def patch_steps_(
        self,
        chains: torch.Tensor,
        rows: np.ndarray,
        x: torch.Tensor,
        mixing: torch.Tensor,
        rng: np.random.Generator,
        gen: torch.Generator,
    ) -> None:
        """:meth:`patch_step` for the chain states ``chains[rows]``, in place (uint8; chain i is
        of image ``i % len(x)``, with input ``x`` and picture ``mixing`` of that image), each
        with its own side, operator, source and box. All draws are made on the host first;
        the chains are then gathered sorted by operator (one upload for indices, boxes and
        operator parameters), every operator runs on whole images (they are pointwise), the
        random masks on the bytes themselves (see :meth:`MixGroups.apply`), and only the box is
        written back."""
        m, device = len(rows), chains.device
        sources = rows % len(x)
        sizes = np.asarray(self.patch_sizes)[rng.integers(len(self.patch_sizes), size=m)]
        op = rng.integers(len(IPMIX_MIXINGS), size=m)
        pictures = None
        if self.p_source == "mixing_or_op":
            (chosen,) = upload([sources], device)
            pictures = mixing.index_select(0, chosen)
            use_op = np.flatnonzero(rng.random(m) <= 0.5)
            random_ops_(pictures, use_op, self.ops, self.severity, rng, x.index_select(0, chosen))
        top, left, h, w = (v[:, None] for v in patch_boxes(*chains.shape[2:], sizes, rng))
        order = np.argsort(op, kind="stable")
        parts = np.bincount(op, minlength=len(IPMIX_MIXINGS)).tolist()
        mixes = [TENSOR_MIXINGS[mix] for mix in IPMIX_MIXINGS]
        groups = MixGroups.draw(mixes, parts, self.beta, rng)
        ys, xs = np.arange(chains.shape[2]), np.arange(chains.shape[3])
        host = [rows[order], sources[order] if pictures is None else order]
        host += [((ys >= top) & (ys < top + h))[order], ((xs >= left) & (xs < left + w))[order]]
        idx, picked, in_rows, in_cols, *params = upload(host + groups.host(), device)
        state = chains.index_select(0, idx)
        other = (mixing if pictures is None else pictures).index_select(0, picked)
        quantize = TENSOR_QUANTIZERS[QUANTIZERS[self.quantize]]
        mixed = groups.apply(state.clone(), other, params, gen, quantize)
        box = in_rows[:, None, :, None] & in_cols[:, None, None, :]
        copy_rows_(chains, idx, select_(box, mixed, state))

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "k": self.k,
            "t": self.t,
            "beta": self.beta,
            "severity": self.severity,
            "patch_sizes": list(self.patch_sizes),
            "all_ops": self.all_ops,
            "min_chain_length": self.min_chain_length,
            "p_source": self.p_source,
            "quantize": self.quantize,
        }
