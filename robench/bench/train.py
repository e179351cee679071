"""``robench bench train`` / ``bench eval``: training-step and inference throughput.

Every method is timed on the same synthetic in-memory data, in the same process, next to a
reference that does the same model work without augmentation work: a plugin that only repeats
each image ``num_views`` times. The ratio between the two is the augmentation's share of a step.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

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
    """Training images/s per method and variant, each against the same-views reference
    measured in this process with the same variant. A variant is a list of ``key=value``
    settings of the ``[train]`` section (``["batch_workers=0"]``, ``["compile=true"]``); the
    empty variant is the default settings."""
    data = synthetic_data(n_images)
    scratch = Path(tempfile.mkdtemp(prefix="robench-bench-"))
    rows = []
    references: dict[tuple[int, str], float] = {}
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
                        "device": str(trainer.device),
                        "amp_bf16": trainer.amp,
                        "workers": workers,
                    }
                )
    shutil.rmtree(scratch, ignore_errors=True)
    return pd.DataFrame(rows)
