"""``robench bench eval``: inference images/s of a model per batch size, as the suite runs it."""

from __future__ import annotations

import time

import pandas as pd
import torch

from robench.bench.synthetic import synthetic_data
from robench.devices import resolve_device, use_amp
from robench.evaluation.base import EvalContext, predict_logits
from robench.models import create_model


def bench_eval(
    *,
    model: str = "wrn_16_2",
    n_images: int = 2000,
    batch_sizes: tuple[int, ...] = (100, 500, 1000),
    device: str = "auto",
) -> pd.DataFrame:
    """Inference images/s of ``model`` (as the evaluator suite runs it) per batch size; on CUDA
    for the eager and the captured forward (``evaluate.forward``), measured in this process."""
    torch_device = resolve_device(device)
    net = create_model(model, 10).to(torch_device, memory_format=torch.channels_last)
    images = synthetic_data(n_images).images
    forwards = ("eager", "captured") if torch_device.type == "cuda" else ("eager",)
    rows = []
    for batch_size in batch_sizes:
        for forward in forwards:
            ctx = EvalContext(
                device=torch_device,
                batch_size=batch_size,
                progress=False,
                amp=use_amp("auto", torch_device),
                forward=forward,
            )
            predict_logits(net, images[: 2 * batch_size], ctx)  # warm-up (and capture)
            start = time.perf_counter()
            predict_logits(net, images, ctx)
            seconds = time.perf_counter() - start
            rows.append(
                {"model": model, "batch_size": batch_size, "forward": forward,
                 "images_per_s": n_images / seconds, "device": str(torch_device),
                 "amp_bf16": ctx.amp}
            )  # fmt: skip
    return pd.DataFrame(rows)
