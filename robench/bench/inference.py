"""``robench bench eval``: inference images/s of a model per batch size, as the suite runs it,
against the bare forward of the same model and batch measured in the same process."""

from __future__ import annotations

import time

import pandas as pd
import torch

from robench.bench.synthetic import synthetic_data
from robench.bench.train import replayed_images_per_s
from robench.devices import resolve_device, use_amp
from robench.evaluation.base import EvalContext, predict_logits
from robench.models import create_model


def bare_forward_images_per_s(
    net: torch.nn.Module, batch_size: int, device: torch.device, *, amp: bool, steps: int = 20
) -> float:
    """The bare forward: the model on one random float batch already on the device, under
    inference mode and autocast as the suite runs it, nothing else; on CUDA captured as one
    graph and replayed, so it runs at the pace of the kernels."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, 32, 32, generator=generator).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    net.eval()

    def forward() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=False):
            net(x)

    with torch.inference_mode():
        return replayed_images_per_s(forward, device, batch_size, steps)


def bench_eval(
    *,
    model: str = "wrn_16_2",
    n_images: int = 2000,
    batch_sizes: tuple[int, ...] = (100, 500, 1000),
    device: str = "auto",
) -> pd.DataFrame:
    """Inference images/s of ``model`` (as the evaluator suite runs it) per batch size; on CUDA
    for the eager and the captured forward (``evaluate.forward``); each against the bare
    forward (:func:`bare_forward_images_per_s`), all measured in this process."""
    torch_device = resolve_device(device)
    amp = use_amp("auto", torch_device)
    net = create_model(model, 10).to(torch_device, memory_format=torch.channels_last)
    images = synthetic_data(n_images).images
    forwards = ("eager", "captured") if torch_device.type == "cuda" else ("eager",)
    rows = []
    for batch_size in batch_sizes:
        bare = bare_forward_images_per_s(net, batch_size, torch_device, amp=amp)
        for forward in forwards:
            ctx = EvalContext(
                device=torch_device, batch_size=batch_size, progress=False, amp=amp, forward=forward
            )
            predict_logits(net, images[: 2 * batch_size], ctx)  # warm-up (and capture)
            start = time.perf_counter()
            predict_logits(net, images, ctx)
            rate = n_images / (time.perf_counter() - start)
            rows.append(
                {"model": model, "batch_size": batch_size, "forward": forward,
                 "images_per_s": rate, "bare_forward_images_per_s": bare,
                 "time_ratio_to_bare_forward": bare / rate, "device": str(torch_device),
                 "amp_bf16": amp}
            )  # fmt: skip
    return pd.DataFrame(rows)
