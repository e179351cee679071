"""``robench bench train``: training-step throughput.

Every method is timed on the same synthetic in-memory data, in the same process, next to two
references with the same model work: the framework's step with an augmentation that only repeats
each image ``num_views`` times (the ratio is the augmentation's share of a step), and the bare
model step, :func:`bare_images_per_s` (the ratio is what the whole framework costs over the
arithmetic: data, augmentation, loss bookkeeping, Python dispatch).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from robench.augment import create_augmentation
from robench.augment.base import Augmentation
from robench.bench.synthetic import synthetic_data
from robench.config import load_config
from robench.models import create_model
from robench.training.trainer import Partial, Trainer


class RepeatViews(Augmentation):
    """The reference: the model sees ``num_views`` copies of each image, nothing else is done."""

    def __init__(self, num_classes: int, image_size: int = 32, num_views: int = 1) -> None:
        super().__init__(num_classes, image_size)
        self.num_views = num_views

    def batch(
        self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x.repeat(self.num_views, 1, 1, 1), y


def _images_per_s(trainer: Trainer, epochs: int) -> float:
    trainer.train_epoch(0, Partial())  # warm-up (allocations, compile, mixing-set load)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        trainer.train_epoch(epoch, Partial())
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return epochs * len(trainer.data) / (time.perf_counter() - start)


def bare_images_per_s(
    model: str,
    batch_size: int,
    num_views: int,
    device: torch.device,
    *,
    amp: bool,
    channels_last: bool,
    steps: int = 10,
) -> float:
    """The bare model step on one random batch of ``num_views * batch_size`` images: forward,
    cross-entropy, backward and SGD (Nesterov, weight decay), nothing else. On CUDA it is captured
    as one graph and replayed (PyTorch's whole-network capture with ``torch.cuda.CUDAGraph``), so
    it runs at the pace of the kernels; elsewhere it runs eagerly. Returns training images (of
    the original batch) per second, as the framework's rate counts them."""
    net = create_model(model, 10).to(device).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    generator = torch.Generator(device="cpu").manual_seed(0)
    n = num_views * batch_size
    x = torch.rand(n, 3, 32, 32, generator=generator).to(device, memory_format=fmt)
    y = torch.randint(0, 10, (n,), generator=generator).to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)  # as the trainer (and PyTorch's capture example)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()

    return replayed_images_per_s(step, device, batch_size, steps)


def replayed_images_per_s(
    fn: Callable[[], None], device: torch.device, images: int, calls: int
) -> float:
    """Images/s of ``fn`` (``images`` per call) over ``calls`` calls after a warm-up, on CUDA
    captured as one graph and replayed (:func:`_replayed`)."""
    run = _replayed(fn, device)
    start = time.perf_counter()
    for _ in range(calls):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return calls * images / (time.perf_counter() - start)


def _replayed(fn: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """``fn``, warmed up, and on CUDA captured as one CUDA graph and replayed (PyTorch's
    whole-network capture); the eager ``fn``, with a warning, where the capture fails, so that
    a benchmark still measures something. Returns once the warm-up is done."""
    if device.type != "cuda":
        fn()  # warm-up (allocations)
        return fn
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the graph, as the capture requires
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            fn()
    except RuntimeError as err:
        warnings.warn(
            f"bare model call: CUDA graph capture failed ({err}); timed eagerly", stacklevel=2
        )
        return fn
    graph.replay()
    torch.cuda.synchronize()
    return graph.replay


def bench_train(
    methods: list[str],
    *,
    model: str = "wrn_16_2",
    n_images: int = 512,
    batch_size: int = 128,
    epochs: int = 1,
    device: str = "auto",
    options: dict[str, dict[str, Any]] | None = None,
    workers: int = 0,
    variants: Sequence[Sequence[str]] = ((),),
) -> pd.DataFrame:
    """Training images/s per method and variant, each against the same-views references
    measured in this process with the same variant: the framework with a repeat-only
    augmentation, and the bare model step. A variant is a list of ``key=value`` settings of the
    ``[train]`` section (``["batch_workers=0"]``, ``["compile=true"]``); the empty variant is
    the default settings."""
    data = synthetic_data(n_images)
    scratch = Path(tempfile.mkdtemp(prefix="robench-bench-"))
    rows = []
    references: dict[tuple[int, str], float] = {}
    bare: dict[tuple[int, str], float] = {}
    for variant in variants:
        setting = ",".join(variant) or "default"
        cfg = dataclasses.replace(
            load_config(None, [f"train.{item}" for item in variant]).train,
            epochs=epochs + 1,
            batch_size=batch_size,
            device=device,
            workers=workers,
            checkpoint_minutes=0,  # nothing is saved while timing
        )
        for name in methods:
            plugin = create_augmentation(name, num_classes=10, **(options or {}).get(name, {}))
            views = plugin.num_views
            for label, aug in [("reference", RepeatViews(10, num_views=views)), (name, plugin)]:
                if label == "reference" and (views, setting) in references:
                    continue
                trainer = Trainer(
                    create_model(model, 10),
                    aug,
                    data,
                    cfg,
                    seed=0,
                    checkpoint=scratch / "checkpoint.pt",
                    log_csv=scratch / "train_log.csv",
                    progress=False,
                )
                rate = _images_per_s(trainer, epochs)
                trainer.close()
                if label == "reference":
                    references[views, setting] = rate
                    bare[views, setting] = bare_images_per_s(
                        model,
                        batch_size,
                        views,
                        trainer.device,
                        amp=trainer.amp,
                        channels_last=cfg.channels_last,
                    )
                    continue
                reference = references[views, setting]
                rows.append(
                    {
                        "method": name,
                        "path": "batch" if plugin.has_batch and not plugin.has_sample else "sample",
                        "num_views": views,
                        "variant": setting,
                        "images_per_s": rate,
                        "reference_images_per_s": reference,
                        "time_ratio_to_reference": reference / rate,
                        "augmentation_share": 1 - rate / reference,
                        "bare_step_images_per_s": bare[views, setting],
                        "time_ratio_to_bare_step": bare[views, setting] / rate,
                        "device": str(trainer.device),
                        "amp_bf16": trainer.amp,
                        "workers": workers,
                    }
                )
    shutil.rmtree(scratch, ignore_errors=True)
    return pd.DataFrame(rows)
