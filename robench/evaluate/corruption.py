"""``corruption``: error (and calibration) on CIFAR-C style corrupted test sets.

The corrupted set is generated in-house from the clean test set (cached by content; see
:mod:`robench.data.corrupted_sets`) or read from an official CIFAR-10-C / CIFAR-100-C folder.

Conventions (evaluators spec §6, methods spec §6.3):
* ``corruption_error`` is the CIFAR convention of the AugMix/PixMix/IPMix papers: the unweighted
  mean of the errors over the corruptions x severities, with no baseline normalisation.
* ``mCE`` / relative mCE (the ImageNet convention) need a reference run; :func:`mce` computes
  them and ``robench report`` applies it with the ``baseline`` run of the same recipe.
* ``corruption_rms_calibration_error`` is a harness convention (no released CIFAR reference):
  RMS calibration error per (corruption, severity), averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from robench.data.corrupted_sets import SEVERITIES, ensure_cifar_c, load_cifar_c
from robench.data.corruption_constants import BENCHMARK_CORRUPTIONS
from robench.data.datasets import ImageData
from robench.errors import ConfigError, DataError
from robench.evaluate.base import METRICS, EvalContext, MetricResult, predict_logits
from robench.evaluate.calibration import confidence_and_correct, rms_calibration_error


def eval_subset(n_test: int, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` test images (all when 0), drawn evenly by a seeded permutation and kept in
    test order: the test set may be sorted by class, so the first ``n`` would be one class."""
    if n < 0:
        raise ConfigError(f"the number of images must be >= 0 (0 = all), got {n}")
    if n == 0 or n >= n_test:
        return np.arange(n_test)
    return np.sort(np.random.default_rng([seed, 7]).permutation(n_test)[:n])


@METRICS.register("corruption", description="CIFAR-C corruption error (15 x 5), per corruption")
def corruption(
    model: torch.nn.Module,
    data: ImageData,
    ctx: EvalContext,
    *,
    corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    n_per_severity: int = 0,
    source: str = "generate",
    seed: int = 0,
    workers: int = 0,
) -> MetricResult:
    """``source = "generate"`` (default) or the path of an official ``CIFAR-10-C`` folder.

    ``n_per_severity`` evaluates a seeded, class-balanced-in-expectation subset of the test set
    (0 = all 10,000, as the benchmark defines it); ``seed`` is the corruption seed.
    """
    index = eval_subset(len(data), n_per_severity, seed)
    labels = data.labels[index]
    if source == "generate":
        images = data.images[index].permute(0, 2, 3, 1).numpy()
        folder = ensure_cifar_c(
            images,
            labels.numpy(),
            corruptions=list(corruptions),
            severities=list(severities),
            seed=seed,
            workers=workers or None,
            progress=ctx.progress,
            cache_root=ctx.cache_dir / "corruptions",
        )
        expected = labels.numpy()
    else:
        folder = Path(source)
        if n_per_severity:
            raise ConfigError("n_per_severity works with generated sets only (source = 'generate')")
        expected = data.labels.numpy()
    rows = []
    correct_all = np.zeros((len(corruptions), len(severities), len(index)), dtype=bool)
    for ci, name in enumerate(corruptions):
        for si, severity in enumerate(severities):
            images, _ = load_cifar_c(folder, name, severity=severity, expected_labels=expected)
            if images.shape[1:] != (data.image_size, data.image_size, 3):
                raise DataError(
                    f"{folder / f'{name}.npy'} holds {images.shape[1]}x{images.shape[2]} images "
                    f"but the test set is {data.image_size}x{data.image_size}: wrong data set"
                )
            x = torch.from_numpy(images).permute(0, 3, 1, 2)
            logits = predict_logits(model, x, ctx, desc=f"{name} s{severity}")
            confidence, correct = confidence_and_correct(logits, labels)
            correct_all[ci, si] = correct
            rows.append(
                {
                    "corruption": name,
                    "severity": severity,
                    "error": 100.0 * (1 - correct.mean()),
                    "rms_calibration_error": 100.0 * rms_calibration_error(confidence, correct),
                    "n": len(correct),
                }
            )
    table = pd.DataFrame(rows)
    per_corruption = table.groupby("corruption", sort=False)["error"].mean()
    values = {
        "corruption_error": float(table["error"].mean()),
        "corruption_rms_calibration_error": float(table["rms_calibration_error"].mean()),
        **{f"corruption_error_{name}": float(err) for name, err in per_corruption.items()},
    }
    return MetricResult(
        values=values,
        tables={"errors": table},
        records={"correct": correct_all, "index": index},
    )


def mce(
    errors: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    clean_error: float,
    reference_clean_error: float,
) -> dict[str, float]:
    """mCE and relative mCE (Hendrycks & Dietterich), normalised by a reference run, in %.

    ``errors``/``reference``: tables with columns corruption, severity, error (%).
    CE_c = sum_s E_{s,c} / sum_s E^ref_{s,c}; relative CE_c uses E - E_clean in both sums.
    """
    key = ["corruption", "severity"]
    both = errors.merge(reference, on=key, suffixes=("", "_ref"), validate="one_to_one")
    if len(both) != len(errors):
        raise ConfigError("mCE: the reference run lacks some (corruption, severity) pairs")
    sums = both.groupby("corruption")[["error", "error_ref"]].sum()
    counts = both.groupby("corruption").size()
    ce = sums["error"] / sums["error_ref"]
    rel = (sums["error"] - counts * clean_error) / (
        sums["error_ref"] - counts * reference_clean_error
    )
    return {"mce": 100.0 * float(ce.mean()), "relative_mce": 100.0 * float(rel.mean())}
