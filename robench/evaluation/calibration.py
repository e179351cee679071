"""Calibration: RMS calibration error (adaptive bins) and ECE (equal-width bins).

The pure functions take per-example confidence (max softmax probability) and correctness and
return **fractions** (0.023 = 2.3 %); the ``calibration`` metric reports them in **percent**, as
the papers do. The corruption metric calls the pure functions on each corruption's predictions,
so they are plain NumPy, vectorised and side-effect free.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from robench.data.datasets import ImageData
from robench.evaluation.base import METRICS, EvalContext, MetricResult, ValueInfo, predict_logits
from robench.evaluation.functional import (
    expected_calibration_error,
    reliability_table,
    rms_calibration_error,
)


def confidence_and_correct(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Max softmax probability and 1[argmax == label] per example, as float64/bool arrays."""
    probs = torch.softmax(logits.double(), dim=1)
    conf, pred = probs.max(dim=1)
    return conf.numpy(), (pred == labels.cpu()).numpy()


@METRICS.register(
    "calibration", description="RMS calibration error (adaptive bins) and ECE on the clean test set"
)
def calibration(
    model: torch.nn.Module,
    data: ImageData,
    ctx: EvalContext,
    *,
    bin_size: int = 100,
    skip_last_bin: bool = False,
    n_bins: int = 15,
) -> MetricResult:
    """Clean-test-set calibration: values in percent, reliability table, per-example records."""
    logits = predict_logits(model, data.images, ctx, desc="calibration")
    conf, correct = confidence_and_correct(logits, data.labels)
    rms = rms_calibration_error(conf, correct, bin_size=bin_size, skip_last_bin=skip_last_bin)
    ece = expected_calibration_error(conf, correct, n_bins=n_bins)
    settings = pd.DataFrame(
        [{"bin_size": bin_size, "skip_last_bin": skip_last_bin, "n_bins": n_bins}]
    )
    return MetricResult(
        values={"rms_calibration_error": 100 * rms, "ece": 100 * ece},
        tables={
            "reliability": reliability_table(conf, correct, n_bins=n_bins),
            "settings": settings,
        },
        records={"confidence": conf, "correct": correct},
    )


#: the values ``calibration`` returns
calibration.values = {  # type: ignore[attr-defined]
    "rms_calibration_error": ValueInfo(
        "RMS calibration error (clean)", headline=True, short="RMS calibration"
    ),
    "ece": ValueInfo("Expected calibration error (clean, 15 bins)", short="ECE"),
}
