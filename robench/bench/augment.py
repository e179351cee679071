"""Throughput of the augmentation plugins on this machine (``robench bench augment``)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from robench.augment.base import Augmentation, create_augmentation
from robench.bench.synthetic import synthetic_images

#: per-sample methods whose JSD views are timed both ways (``jsd`` on and off)
JSD_METHODS = ("augmix", "ipmix", "pixmix")
#: methods with a ``path`` option: both paths are timed, in the same process
TWO_PATH_METHODS = ("augmix", "ipmix", "pixmix")
BATCH = 128  # images per ``batch()`` call for batch-path methods


def _time_sample(plugin: Augmentation, images: np.ndarray, seed: int) -> float:
    rng = np.random.default_rng(seed)
    plugin.sample(images[0], rng)  # warm-up (imports, caches)
    start = time.perf_counter()
    for image in images:
        plugin.sample(image, rng)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_batch(plugin: Augmentation, images: np.ndarray, seed: int, device: torch.device) -> float:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 255
    y = torch.zeros(len(images), dtype=torch.long, device=device)
    plugin.batch(x[:BATCH].clone(), y[:BATCH], rng)  # warm-up (and the mixing set's device copy)
    _sync(device)
    start = time.perf_counter()
    for i in range(0, len(images), BATCH):
        plugin.batch(x[i : i + BATCH].clone(), y[i : i + BATCH], rng)
    _sync(device)
    return time.perf_counter() - start


class _OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched while active (views and copies included)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def ops_per_batch(plugin: Augmentation, images: np.ndarray, seed: int, device: torch.device) -> int:
    """The aten operators one ``batch()`` call on the first ``BATCH`` images dispatches on
    ``device``: each costs the host a dispatch, and on a GPU most launch a kernel, so this is
    what bounds a batch path on a fast GPU. (The devices differ only in how the host's draws
    travel: one tensor per array on the CPU, one packed copy on CUDA.)"""
    x = torch.from_numpy(images[:BATCH]).to(device).permute(0, 3, 1, 2).float() / 255
    y = torch.zeros(len(x), dtype=torch.long, device=device)
    plugin.batch(x.clone(), y, np.random.default_rng(seed))  # warm-up (the mixing set's copy)
    with _OpCounter() as counter:
        plugin.batch(x.clone(), y, np.random.default_rng(seed))
    return counter.count


def _time(plugin: Augmentation, images: np.ndarray, seed: int, device: torch.device) -> float:
    """Seconds for the plugin's own path over all images (the batch path on ``device``)."""
    if plugin.has_sample:
        return _time_sample(plugin, images, seed)
    return _time_batch(plugin, images, seed, device)


def bench_augment(
    methods: list[str],
    n_images: int = 256,
    seed: int = 0,
    images: np.ndarray | None = None,
    image_size: int = 32,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """Images/s of each method's default path (``sample`` in one process on the CPU, or
    ``batch`` on ``device``).

    ``images`` (uint8 (N, H, W, 3)) defaults to :mod:`robench.bench.synthetic` images; the ops'
    cost barely depends on content. JSD methods are timed with and without their JSD views.
    AugMix, PixMix and IPMix are timed on both paths (``sample_images_per_s``,
    ``batch_images_per_s``) one after the other in this process, and ``speedup`` is their ratio
    (batch / sample), which is steadier than either figure on a shared machine. Mixing-set
    loading is done before the clock starts. ``batch_ops`` is :func:`ops_per_batch` of the
    batch path on ``device``.
    One row per (method, jsd).
    """
    if images is None:
        images = synthetic_images(n_images, image_size, seed)
    images = images[:n_images]
    device = torch.device(device)
    rows: list[dict[str, Any]] = []
    for name in methods:
        variants = [{"jsd": True}, {"jsd": False}] if name in JSD_METHODS else [{}]
        for options in variants:
            plugin = create_augmentation(
                name, num_classes=10, image_size=images.shape[1], **options
            )
            path = "sample" if plugin.has_sample else "batch"
            per_path = {path: _time(plugin, images, seed, device)}
            if name in TWO_PATH_METHODS:
                other = "batch" if path == "sample" else "sample"
                twin = create_augmentation(
                    name, num_classes=10, image_size=images.shape[1], path=other, **options
                )
                per_path[other] = _time(twin, images, seed, device)
            seconds = per_path[path]
            speed = {p: len(images) / s for p, s in per_path.items()}
            batch_plugin = plugin if path == "batch" else (twin if "batch" in per_path else None)
            rows.append(
                {
                    "method": name,
                    "jsd": bool(plugin.describe().get("jsd", False)),
                    "path": path,
                    "num_views": plugin.num_views,
                    "n_images": len(images),
                    "seconds": seconds,
                    "images_per_s": len(images) / seconds,
                    "views_per_s": len(images) * plugin.num_views / seconds,
                    "sample_images_per_s": speed.get("sample", math.nan),
                    "batch_images_per_s": speed.get("batch", math.nan),
                    "speedup": speed["batch"] / speed["sample"] if len(speed) == 2 else math.nan,
                    "batch_ops": (
                        math.nan
                        if batch_plugin is None
                        else ops_per_batch(batch_plugin, images, seed, device)
                    ),
                    "batch_device": str(device),
                    "torch_threads": torch.get_num_threads(),
                }
            )
    return pd.DataFrame(rows)
