"""``pixmix``: PixMix as in the official ``cifar.py`` (``andyzoujm/pixmix``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robench.augment.base import AUGMENTATIONS, to_float_chw
from robench.augment.mixing_ops import PIXMIX_MIXINGS
from robench.augment.ops import AUGMIX_ALL_OPS, AUGMIX_OPS, random_op
from robench.augment.tensor_ops import (
    TENSOR_MIXINGS,
    MixGroups,
    random_ops_,
    to_float,
    torch_generator,
    upload,
)
from robench.augment.views import MixViews
from robench.errors import ConfigError


@AUGMENTATIONS.register(
    "pixmix", description="PixMix: 0-4 rounds of add/multiply with fractals or augmented copies"
)
class PixMix(MixViews):
    """PixMix: start from x or one op of x, then 0..k rounds each mixing in (p = 1/2) the mixing
    picture or a freshly augmented copy of the original, by ``add`` or ``multiply``, clamped to
    [0, 1] after every round.

    Defaults follow the code (``cifar.py``): k = 4, beta = 3, severity 3, the 9 AugMix ops
    (``all_ops=False``; the PixMix README's recipes pass ``--all-ops``: ``all_ops=True`` here),
    no JSD (``jsd=True`` gives AugMix-style clean + 2 views, not in the PixMix code). The IPMix
    paper's PixMix baseline used k = 3, beta = 4. ``path``: ``"batch"`` (default, tensor ops on
    the training device, equivalent in distribution, clamped after every round as well) or
    ``"sample"`` (PIL in DataLoader workers); see :mod:`robench.augment.views`.
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int = 32,
        k: int = 4,
        beta: float = 3,
        severity: float = 3,
        all_ops: bool = False,
        mixing_set: str = "fractals",
        mixing_count: int = 1000,
        jsd: bool = False,
        jsd_weight: float = 12.0,
        padding: int = 4,
        path: str = "batch",
    ) -> None:
        if k < 0 or beta <= 0 or not 0 < severity <= 10:
            raise ConfigError(
                f"pixmix needs k >= 0, beta > 0, 0 < severity <= 10; got {k}, {beta}, {severity}"
            )
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
        self.k, self.beta, self.severity = k, beta, severity
        self.all_ops = bool(all_ops)
        self.ops = AUGMIX_ALL_OPS if self.all_ops else AUGMIX_OPS

    def view(
        self, x: np.ndarray, mixing: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray:
        def augmented_or(fallback: np.ndarray) -> np.ndarray:
            pick = random_op(x, self.ops, self.severity, rng) if rng.random() < 0.5 else fallback
            return to_float_chw(pick)

        mixed = augmented_or(x)
        for _ in range(rng.integers(self.k + 1)):
            other = augmented_or(mixing)
            op = PIXMIX_MIXINGS[rng.integers(len(PIXMIX_MIXINGS))]
            mixed = np.clip(op(mixed, other, self.beta, rng), 0, 1)
        return mixed

    def batch_views(
        self, x: torch.Tensor, mixing: torch.Tensor | None, rng: np.random.Generator
    ) -> torch.Tensor:
        """Every image's start (slot 0) and round sources (slots 1..k) are drawn up front and
        made in one batched op pass; round r then mixes into the images with more than r
        rounds, each with its own operator and (a, b), clamped after every round."""
        assert mixing is not None  # MixViews always draws one: mixing_set is set
        n, device = len(x), x.device
        rounds = rng.integers(self.k + 1, size=n)
        slot = np.arange(self.k + 1)[:, None]
        augmented = ((slot == 0) | (rounds >= slot)) & (rng.random((self.k + 1, n)) < 0.5)
        # slot 0 is x and slots 1..k the picture, each replaced by an op of x where augmented
        sources = torch.cat([x, *[mixing] * self.k])
        random_ops_(sources, np.flatnonzero(augmented), self.ops, self.severity, rng, x)
        mixed = to_float(sources[:n])
        gen = torch_generator(rng, device)
        mixes = [TENSOR_MIXINGS[mix] for mix in PIXMIX_MIXINGS]
        for r in range(self.k):
            rows = np.flatnonzero(rounds > r)
            if not rows.size:
                break  # no image has more rounds (and nothing is drawn for none)
            op = rng.integers(len(mixes), size=len(rows))
            # the round's images sorted by operator: one upload, one gather, one write-back
            order = rows[np.argsort(op, kind="stable")]
            groups = MixGroups.draw(
                mixes, np.bincount(op, minlength=len(mixes)).tolist(), self.beta, rng
            )
            idx, other_idx, *params = upload([order, order + (r + 1) * n, *groups.host()], device)
            other = sources.index_select(0, other_idx)
            out = groups.apply(mixed.index_select(0, idx), other, params, gen)
            mixed.index_copy_(0, idx, out.clamp_(0, 1))
        return mixed

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "k": self.k,
            "beta": self.beta,
            "severity": self.severity,
            "all_ops": self.all_ops,
        }
