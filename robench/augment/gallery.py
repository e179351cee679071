"""Picture grids of what each augmentation does, to check methods by eye against their papers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from robench.augment.base import Augmentation, create_augmentation
from robench.io import atomic_write

SCALE = 4  # nearest-neighbour upscaling so 32-pixel images are visible
GAP = 2  # pixels between tiles (before upscaling)
DPI = 100


def augmented_views(plugin: Augmentation, images: np.ndarray, views: int, seed: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, views, H, W, 3): the plugin's augmented views.

    Per-sample plugins are called per image, batch plugins see all N images as one batch
    (CutMix/Mixup partners are other gallery images); for JSD methods the clean view is skipped.
    """
    rng = np.random.default_rng(seed)
    if plugin.has_sample:
        out = []
        for image in images:
            got: list[np.ndarray] = []
            while len(got) < views:
                v = plugin.sample(image, rng)
                got.extend(v[1:] if plugin.num_views > 1 else v)
            out.append(np.stack(got[:views]))
        chw = np.stack(out)
    else:
        n = len(images)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        y = torch.zeros(n, dtype=torch.long)
        batches: list[np.ndarray] = []  # each (N, 3, H, W): one augmented view of every image
        while len(batches) < views:
            out = (
                plugin.batch(x.clone(), y, rng)[0]
                .numpy()
                .reshape(plugin.num_views, n, *x.shape[1:])
            )
            batches.extend(out[1:] if plugin.num_views > 1 else out)  # skip JSD's clean view
        chw = np.stack(batches[:views], 1)
    return (chw.transpose(0, 1, 3, 4, 2) * 255 + 0.5).astype(np.uint8)


def _tile(rows: list[list[np.ndarray]], group: int) -> np.ndarray:
    """Rows of equal-size HWC tiles -> one white-gapped canvas (an extra gap between groups)."""
    h, w = rows[0][0].shape[:2]
    n_cols = len(rows[0])
    n_groups = n_cols // group
    width = n_cols * (w + GAP) + n_groups * 2 * GAP
    canvas = np.full((len(rows) * (h + GAP) + GAP, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            top = GAP + r * (h + GAP)
            left = GAP + c * (w + GAP) + (c // group) * 2 * GAP
            canvas[top : top + h, left : left + w] = tile
    return canvas.repeat(SCALE, 0).repeat(SCALE, 1)


def _canvas_figure(canvas: np.ndarray, left: int = 0, top: int = 0, bottom: int = 0) -> Figure:
    """A figure whose axes show ``canvas`` pixel for pixel, with margins (px) for labels."""
    h, w = canvas.shape[:2]
    width, height = w + left, h + top + bottom
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = fig.add_axes((left / width, bottom / height, w / width, h / height))
    ax.imshow(canvas, interpolation="nearest")
    ax.tick_params(length=0)
    ax.set_frame_on(False)
    return fig


def _save(fig: Figure, out_png: Path) -> Path:
    """Figure (no pyplot: no global state, no GUI backend) -> PNG, written atomically."""
    with atomic_write(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=DPI)
    return out_png


def make_gallery(
    images: np.ndarray,
    methods: list[str],
    out_png: Path,
    *,
    views: int = 4,
    seed: int = 0,
    num_classes: int = 10,
    options: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """A PNG grid: one row per method (``baseline`` first), for each image the original then
    ``views`` augmented views, upscaled 4x (nearest) and labelled. ``options[method]`` are
    passed to that plugin (e.g. ``{"ipmix": {"quantize": "clamped"}}``)."""
    names = ["baseline", *(m for m in methods if m != "baseline")]
    size = images.shape[1]
    rows = []
    for i, name in enumerate(names):
        extra = (options or {}).get(name, {})
        plugin = create_augmentation(name, num_classes=num_classes, image_size=size, **extra)
        aug = augmented_views(plugin, images, views, seed + i)
        rows.append([t for img, v in zip(images, aug, strict=True) for t in (img, *v)])
    group = views + 1
    canvas = _tile(rows, group)
    fig = _canvas_figure(canvas, left=90, top=30, bottom=60)
    ax = fig.axes[0]
    step = (size + GAP) * SCALE
    ax.set_yticks([(GAP + size / 2) * SCALE + r * step for r in range(len(names))], names)
    centres = [
        (GAP + size / 2) * SCALE + c * step + (c // group) * 2 * GAP * SCALE
        for c in range(len(rows[0]))
    ]
    labels = ["original" if c % group == 0 else f"view {c % group}" for c in range(len(rows[0]))]
    ax.set_xticks(centres, labels, rotation=90, fontsize=7)
    ax.set_title(f"augmented views (seed {seed})", fontsize=9)
    return _save(fig, Path(out_png))


def make_mixing_grid(mixing_images: np.ndarray, out_png: Path, *, columns: int = 10) -> Path:
    """A PNG grid of mixing-set pictures (uint8 (M, H, W, 3)), upscaled 4x (nearest)."""
    pictures = list(mixing_images)
    pad = -len(pictures) % columns
    pictures += [np.full_like(pictures[0], 255)] * pad
    rows = [pictures[r : r + columns] for r in range(0, len(pictures), columns)]
    canvas = _tile(rows, columns)
    fig = _canvas_figure(canvas, top=30)
    ax = fig.axes[0]
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"mixing set: {len(mixing_images)} pictures", fontsize=9)
    return _save(fig, Path(out_png))
