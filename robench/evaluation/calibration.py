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
from robench.evaluation.base import METRICS, EvalContext, MetricResult, predict_logits


def _check(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    corr = np.asarray(correct, dtype=np.float64).ravel()
    if conf.size == 0 or conf.shape != corr.shape:
        raise ValueError(f"need equal-length, non-empty inputs; got {conf.shape}, {corr.shape}")
    return conf, corr


def rms_calibration_error(
    confidence: np.ndarray,
    correct: np.ndarray,
    *,
    bin_size: int = 100,
    skip_last_bin: bool = False,
) -> float:
    """RMS calibration error as a fraction (Hendrycks ``calib_err``, p = 2).

    Examples are sorted by confidence (stable sort) and cut into ``N // bin_size`` consecutive
    bins of ``bin_size``; the last bin absorbs the remainder. RMS = sqrt(sum_b n_b/N *
    (mean conf_b - accuracy_b)^2). With fewer than ``bin_size`` examples there is one bin.

    ``skip_last_bin=True`` reproduces the reference loop, which leaves out the most confident
    bin but keeps N in the weights (``calib_err`` in ``hendrycks/outlier-exposure``
    ``utils/calibration_tools.py``; docs/metrics.md#calibration). We default to False because
    that bin holds the most over-confident predictions, exactly what the metric exists to catch;
    results record which mode was used so reference-compatible numbers stay available.
    """
    conf, corr = _check(confidence, correct)
    if bin_size < 1:
        raise ValueError(f"bin_size must be >= 1, got {bin_size}")
    order = np.argsort(conf, kind="stable")
    conf, corr = conf[order], corr[order]
    n_bins = max(conf.size // bin_size, 1)
    starts = np.arange(n_bins) * bin_size
    counts = np.diff(np.append(starts, conf.size))
    gaps = (np.add.reduceat(conf, starts) - np.add.reduceat(corr, starts)) / counts
    terms = counts / conf.size * gaps**2
    if skip_last_bin:
        terms = terms[:-1]
    return float(np.sqrt(terms.sum()))


def _equal_width_bins(
    conf: np.ndarray, corr: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges, counts, confidence sums and correct sums of right-closed bins (lo, hi].

    Confidence 0 goes into the first bin (the ECE binning of Guo et al., ICML 2017,
    arXiv:1706.04599).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=conf, minlength=n_bins)
    corr_sum = np.bincount(index, weights=corr, minlength=n_bins)
    return edges, count, conf_sum, corr_sum


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = 15
) -> float:
    """ECE as a fraction (Guo et al.): sum_b n_b/N * |accuracy_b - confidence_b|, empty bins 0."""
    conf, corr = _check(confidence, correct)
    _, _, conf_sum, corr_sum = _equal_width_bins(conf, corr, n_bins)
    return float(np.abs(corr_sum - conf_sum).sum() / conf.size)


def reliability_table(
    confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = 15
) -> pd.DataFrame:
    """Per equal-width bin: edges, count, mean confidence, accuracy (NaN when empty).

    The data behind a reliability diagram, binned exactly as :func:`expected_calibration_error`.
    """
    conf, corr = _check(confidence, correct)
    edges, count, conf_sum, corr_sum = _equal_width_bins(conf, corr, n_bins)
    with np.errstate(invalid="ignore"):
        mean_conf, accuracy = conf_sum / count, corr_sum / count
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "count": count,
            "mean_confidence": mean_conf,
            "accuracy": accuracy,
        }
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
calibration.value_names = ("rms_calibration_error", "ece")  # type: ignore[attr-defined]
