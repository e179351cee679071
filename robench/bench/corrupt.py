"""How fast the corruptions run: images per second, one core and all cores (BENCHMARKS.md).

The numbers project the cost of regenerating a full CIFAR-10-C (15 corruptions x 5 severities x
10,000 images) on the current machine. Timing includes each image's generator, as generation does.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from robench.bench.synthetic import synthetic_images
from robench.data.corrupted_sets import (
    _compute,
    _init_worker,
    _local_source,
    _pool_context,
    _Task,
)
from robench.data.corruption_constants import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS

FULL_SET_IMAGES = 50_000  # one CIFAR-10-C file: 5 severities x 10,000 test images


def _bench_one(
    name: str,
    tasks: Callable[[str, int], list[_Task]],
    n: int,
    n_sev: int,
    pool: ProcessPoolExecutor | None,
    share: int,
) -> dict[str, object]:
    _compute(_Task("c", name, 1, 0, min(n, 8)))  # warm per-process caches (frost, zoom)
    start = time.perf_counter()
    for task in tasks(name, n):
        _compute(task)
    one = (time.perf_counter() - start) / (n * n_sev)
    many = one
    if pool is not None:
        start = time.perf_counter()
        list(pool.map(_compute, tasks(name, share)))
        many = (time.perf_counter() - start) / (n * n_sev)
    return {
        "corruption": name,
        "benchmark": name in BENCHMARK_CORRUPTIONS,
        "ms_per_image": one * 1e3,
        "images_per_s_1core": 1 / one,
        "images_per_s_all": 1 / many,
        "projected_s_50k": FULL_SET_IMAGES * many,
    }


def bench_corrupt(
    n_images: int = 200,
    *,
    corruptions: Sequence[str] = ALL_CORRUPTIONS,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    workers: int | None = None,
    images: np.ndarray | None = None,
    constants: str = "cifar",
) -> pd.DataFrame:
    """One row per corruption: ms per image and images/s on one core and on ``workers`` cores
    (default: all), and the projected seconds for one full 50,000-image file on all cores.

    ``df.attrs["projected_full_set_s"]`` sums the projection over the 15 benchmark corruptions
    present (the whole CIFAR-10-C when all are measured).
    """
    images = synthetic_images(n_images) if images is None else np.asarray(images)
    n = len(images)
    workers = max(1, workers or os.cpu_count() or 1)
    share = math.ceil(n / workers)

    def tasks(name: str, step: int) -> list[_Task]:
        return [
            _Task("c", name, s, a, min(a + step, n)) for s in severities for a in range(0, n, step)
        ]

    rows = []
    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(
            workers,
            mp_context=_pool_context(),
            initializer=_init_worker,
            initargs=(images, 0, constants, os.getpid()),
        )
        list(pool.map(_compute, tasks(corruptions[0], share)))  # start the workers up front
    try:
        with _local_source(images, 0, constants):
            for name in corruptions:
                rows.append(_bench_one(name, tasks, n, len(severities), pool, share))
    finally:
        if pool is not None:
            pool.shutdown()
    df = pd.DataFrame(rows)
    df.attrs["workers"] = workers
    df.attrs["n_images"] = n
    df.attrs["projected_full_set_s"] = float(df.loc[df.benchmark, "projected_s_50k"].sum())
    return df
