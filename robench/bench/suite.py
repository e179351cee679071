"""``robench bench suite``: wall time of the whole evaluator suite for one model on one test set.

The corrupted and perturbed sets are generated once and cached; the benchmark's question is how
long evaluating a model takes once they exist. So the suite runs twice in this process: first
with a one-layer stand-in model, which pays for generating (or loading) every cached set and
does almost no model work (``prepare_seconds``), then with the real model (``seconds``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pandas as pd
import torch

from robench.data.datasets import ImageData
from robench.evaluation.base import EvalContext
from robench.evaluation.suite import evaluate


def _stand_in(num_classes: int, image_size: int) -> torch.nn.Module:
    """The cheapest model the suite accepts: flatten + one linear layer."""
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(3 * image_size * image_size, num_classes)
    )


def bench_suite(
    model: torch.nn.Module,
    data: ImageData,
    metrics: list[str],
    *,
    ctx: EvalContext,
    options: dict[str, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per metric: set preparation seconds, suite seconds, and the total row."""
    quiet = dataclasses.replace(ctx, progress=False)
    prepared = evaluate(
        _stand_in(data.num_classes, data.image_size), data, metrics, ctx=quiet, options=options
    )
    start = time.perf_counter()
    results = evaluate(model, data, metrics, ctx=ctx, options=options)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    total = time.perf_counter() - start
    rows = [
        {
            "metric": name,
            "prepare_seconds": prepared[name].seconds,
            "seconds": result.seconds,
        }
        for name, result in results.items()
    ]
    rows.append(
        {
            "metric": "total",
            "prepare_seconds": sum(r.seconds for r in prepared.values()),
            "seconds": total,
        }
    )
    table = pd.DataFrame(rows)
    table["device"] = str(ctx.device)
    table["amp_bf16"] = ctx.amp
    table["batch_size"] = ctx.batch_size
    table["n_test"] = len(data)
    return table
