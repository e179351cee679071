"""Confidence intervals and significance tests, over seeds or over test examples.

The leaderboard (intervals) and the claims (tests) share these functions so that both read the
same evidence the same way. Two levels of evidence exist:

* several seeds of a recipe: a t-interval, and Welch's t-test between two methods;
* one seed: a bootstrap over the test examples (from ``records.npz``), paired between two runs
  evaluated on the same examples, so that the example-to-example difficulty cancels out.

Bootstraps are seeded (the same report twice gives the same numbers).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0

Alternative = Literal["less", "greater"]


@dataclass(frozen=True)
class Examples:
    """Per-example outcomes of one run, from which a metric is recomputed on any resample.

    ``values`` has one entry (or row) per test example; ``statistic`` maps a resample of them to
    the metric (e.g. 100 * (1 - mean correct)); ``key`` names the examples, so that only runs
    evaluated on the same examples are paired.
    """

    values: np.ndarray
    statistic: Callable[[np.ndarray], float]
    key: str

    def __len__(self) -> int:
        return len(self.values)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval for the mean of >= 2 values (seeds); NaNs for fewer."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def _resamples(n: int, samples: int, seed: int) -> Iterator[np.ndarray]:
    """``samples`` sets of ``n`` example indices drawn with replacement, one at a time (a
    10,000 x 2,000 index matrix would take 160 MB)."""
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        yield rng.integers(0, n, n)


def bootstrap_values(
    examples: Examples, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """The metric on ``samples`` bootstrap resamples of the test examples."""
    index = _resamples(len(examples), samples, seed)
    return np.array([examples.statistic(examples.values[i]) for i in index])


def bootstrap_interval(
    examples: Examples,
    confidence: float = CONFIDENCE,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval over test examples (one run)."""
    boot = bootstrap_values(examples, samples, seed)
    lo, hi = np.percentile(boot, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def welch_p(
    a: Sequence[float],
    b: Sequence[float] | None,
    *,
    threshold: float,
    alternative: Alternative,
) -> float:
    """One-sided p-value of H1: mean(a) - mean(b) < threshold ("less") or > ("greater").

    Welch's t-test over seeds (unequal variances); with ``b`` None, a one-sample t-test of
    mean(a) against ``threshold``. NaN when a side has < 2 values or both have no spread.
    """
    x = np.asarray(a, dtype=float)
    if x.size < 2 or (b is not None and len(b) < 2):
        return float("nan")
    with warnings.catch_warnings():  # near-identical seeds: scipy warns, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        if b is None:
            result = stats.ttest_1samp(x, threshold, alternative=alternative)
        else:
            y = np.asarray(b, dtype=float) + threshold
            result = stats.ttest_ind(x, y, equal_var=False, alternative=alternative)
    return float(result.pvalue)


def bootstrap_p(
    a: Examples,
    b: Examples | None,
    *,
    threshold: float,
    alternative: Alternative,
    scale_a: float = 1.0,
    scale_b: float = 1.0,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> float:
    """Paired bootstrap p-value of H1: scale_a * A - scale_b * B < threshold ("less") or >.

    The same resampled example indices go to both runs (they must share their examples, see
    :attr:`Examples.key`); p = (1 + #resamples where the difference is on the H0 side) /
    (samples + 1). With ``b`` None, A alone is compared with ``threshold``.
    """
    if b is not None and (a.key != b.key or len(a) != len(b)):
        raise ValueError("a paired bootstrap needs two runs evaluated on the same examples")
    diffs = np.empty(samples)
    for k, i in enumerate(_resamples(len(a), samples, seed)):
        other = scale_b * b.statistic(b.values[i]) if b is not None else 0.0
        diffs[k] = scale_a * a.statistic(a.values[i]) - other
    against = diffs >= threshold if alternative == "less" else diffs <= threshold
    return float((1 + against.sum()) / (samples + 1))
