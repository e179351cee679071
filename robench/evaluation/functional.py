"""The metrics' math in functional form: NumPy and pandas only, no models, no torch, no data
generation, so the report and the claims use the same formulas as the metrics without importing
them (torchmetrics' ``functional`` in spirit).

* calibration: :func:`rms_calibration_error`, :func:`expected_calibration_error`,
  :func:`reliability_table` (fractions, not percent);
* corruption: :func:`mce` against any reference run, :func:`alexnet_mce` against AlexNet;
* OOD detection: :func:`ood_measures` (AUROC, AUPR, FPR95), :func:`fpr_at_recall`;
* stability: :func:`flip_probability` (CIFAR-P);
* per-example outcomes: :func:`percent_error`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from robench.errors import ConfigError

_SEVERITIES = (1, 2, 3, 4, 5)  # the five levels of the corruption benchmarks


def percent_error(correct: np.ndarray) -> float:
    """The percent error of per-example outcomes (1 right, 0 wrong, or a fraction): what every
    value declared ``ci="examples"`` is, and what a bootstrap resample of them recomputes."""
    return 100.0 * (1.0 - float(np.asarray(correct).mean()))


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


#: AlexNet's ImageNet-C top-1 errors (%), per corruption averaged over severities 1-5
#: (torchvision's AlexNet, as hard-coded in ``google-research/augmix`` ``imagenet.py``)
ALEXNET_ERRORS = {
    "gaussian_noise": 88.6428,
    "shot_noise": 89.4468,
    "impulse_noise": 92.2640,
    "defocus_blur": 81.9880,
    "glass_blur": 82.6268,
    "motion_blur": 78.5948,
    "zoom_blur": 79.8360,
    "snow": 86.6816,
    "frost": 82.6572,
    "fog": 81.9324,
    "brightness": 56.4592,
    "contrast": 85.3204,
    "elastic_transform": 64.6056,
    "pixelate": 71.7840,
    "jpeg_compression": 60.6500,
}
#: AlexNet's clean ImageNet top-1 error (%): torchvision IMAGENET1K_V1 weights, acc@1 56.522
ALEXNET_CLEAN_ERROR = 100.0 - 56.522


def alexnet_mce(errors: pd.DataFrame, *, clean_error: float) -> dict[str, float]:
    """ImageNet-C mCE and relative mCE (%) normalised by AlexNet (Hendrycks & Dietterich).

    ``errors``: (corruption, severity, error %) of ImageNet-C corruptions, all five severities of
    each: AlexNet's errors are known as means over the five, so sum_s E^AlexNet_{s,c} = 5 x mean
    is exact only then. ``clean_error`` (%) is the model's, for the relative mCE (NaN: NaN).
    """
    unknown = sorted(set(errors["corruption"]) - set(ALEXNET_ERRORS))
    if unknown:
        raise ConfigError(f"AlexNet mCE: no AlexNet errors for {', '.join(unknown)}")
    levels = errors.groupby("corruption")["severity"].apply(sorted)
    partial = [name for name, found in levels.items() if found != list(_SEVERITIES)]
    if partial:
        raise ConfigError(f"AlexNet mCE needs severities 1-5 of every corruption; not {partial}")
    reference = pd.DataFrame(
        [
            {"corruption": name, "severity": level, "error": ALEXNET_ERRORS[name]}
            for name in levels.index
            for level in _SEVERITIES
        ]
    )
    return mce(
        errors, reference, clean_error=clean_error, reference_clean_error=ALEXNET_CLEAN_ERROR
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


def fpr_at_recall(is_ood: np.ndarray, anomaly: np.ndarray, recall_level: float = 0.95) -> float:
    """FPR at the distinct-score threshold whose OOD recall is closest to ``recall_level``.

    As OE's ``fpr_and_fdr_at_recall``: sort by anomaly descending, cumulate true positives at the
    end of each run of equal scores, keep thresholds up to the first reaching full recall, and
    take the first argmin of |recall - level| counting from the lowest threshold.
    """
    order = np.argsort(anomaly, kind="mergesort")[::-1]
    score, positive = anomaly[order], is_ood[order].astype(bool)
    ends = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    tps = np.cumsum(positive, dtype=np.float64)[ends]
    fps = 1 + ends - tps
    last = tps.searchsorted(tps[-1])
    recall, fps = (tps / tps[-1])[last::-1], fps[last::-1]
    cutoff = np.argmin(np.abs(recall - recall_level))
    return float(fps[cutoff] / np.sum(~positive))


def ood_measures(score_in: np.ndarray, score_out: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR and FPR95 as fractions, OOD positive, from in-distribution scores
    (higher = more in-distribution, e.g. MSP) of in-distribution and OOD examples."""
    # Imported here: scikit-learn's metrics take about a second to import, `robench --help` none.
    from sklearn.metrics import average_precision_score, roc_auc_score

    score_in = np.asarray(score_in, dtype=np.float64).ravel()
    score_out = np.asarray(score_out, dtype=np.float64).ravel()
    if score_in.size == 0 or score_out.size == 0:
        raise ValueError("ood_measures needs at least one in-distribution and one OOD score")
    anomaly = -np.r_[score_out, score_in]
    is_ood = np.r_[np.ones(score_out.size), np.zeros(score_in.size)]
    return {
        "auroc": float(roc_auc_score(is_ood, anomaly)),
        "aupr": float(average_precision_score(is_ood, anomaly)),
        "fpr95": fpr_at_recall(is_ood, anomaly),
    }


def flip_probability(predictions: np.ndarray, noise: bool, *, difficulty: int = 1) -> float:
    """cifar-p-eval's ``flip_prob``: the mean over sequences of the fraction of flipped frames.

    Noise sequences compare every frame with frame 0 (the clean image) and ignore difficulty;
    the others compare consecutive frames ``difficulty`` apart, over every starting offset
    (``ImageNet-P/cifar-p-eval.py``). ``predictions`` is (n_sequences, T) class indices.
    """
    preds = np.asarray(predictions)
    if preds.ndim != 2 or preds.shape[0] == 0 or preds.shape[1] < 2:
        raise ConfigError(f"predictions must be (n_sequences, frames >= 2); got {preds.shape}")
    step = 1 if noise else difficulty
    if not 1 <= step < preds.shape[1]:
        raise ConfigError(f"difficulty {difficulty} needs more than {step} frames")
    flips = []
    for start in range(step):
        sub = preds[:, start::step]
        reference = sub[:, :1] if noise else sub[:, :-1]
        flips.append(sub[:, 1:] != reference)
    per_sequence = np.concatenate(flips, axis=1).mean(axis=1)
    return float(per_sequence.mean())
