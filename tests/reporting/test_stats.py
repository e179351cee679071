"""Intervals and p-values against hand computations and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from robench.reporting.stats import (
    Examples,
    bootstrap_interval,
    bootstrap_p,
    t_interval,
    welch_p,
)


def _error(v: np.ndarray) -> float:
    return 100.0 * (1 - v.mean())


def test_t_interval_by_hand() -> None:
    # mean 13, std sqrt(13), t(0.975, 2) = 4.302653
    low, high = t_interval([10.0, 12.0, 17.0])
    half = 4.302652729911275 * math.sqrt(13) / math.sqrt(3)
    assert (low, high) == pytest.approx((13 - half, 13 + half))
    assert all(math.isnan(v) for v in t_interval([5.0]))


def test_welch_p_by_hand_with_a_threshold() -> None:
    a, b, threshold = np.array([8.5, 8.7, 8.6]), np.array([10.1, 9.8, 10.0]), 0.5
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    t = (a.mean() - b.mean() - threshold) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    assert welch_p(a, b, threshold=threshold, alternative="less") == pytest.approx(sps.t.cdf(t, df))
    assert welch_p(a, b, threshold=threshold, alternative="greater") == pytest.approx(
        sps.t.sf(t, df)
    )
    one = welch_p(a, None, threshold=9.0, alternative="less")
    assert one == pytest.approx(sps.ttest_1samp(a, 9.0, alternative="less").pvalue)
    assert math.isnan(welch_p(a, b[:1], threshold=0, alternative="less"))


def test_paired_bootstrap_p_extremes() -> None:
    n = 300
    better = Examples(np.ones(n), _error, "k")  # always right: error 0
    worse = Examples(np.r_[np.zeros(30), np.ones(n - 30)], _error, "k")  # error 10 %
    p = bootstrap_p(better, worse, threshold=0.0, alternative="less", samples=500)
    assert p == pytest.approx(1 / 501)  # no resample puts "better" at or above "worse"
    same = bootstrap_p(worse, worse, threshold=0.0, alternative="less", samples=500)
    assert same == 1.0  # the difference is always exactly 0, on the H0 side
    # one-sided the other way round, and a threshold the difference always clears
    assert bootstrap_p(better, worse, threshold=-30, alternative="greater", samples=200) == (
        pytest.approx(1 / 201)
    )
    with pytest.raises(ValueError, match="same examples"):
        bootstrap_p(better, Examples(np.ones(n), _error, "other"), threshold=0, alternative="less")


def test_bootstrap_p_is_the_share_of_resamples_on_the_null_side() -> None:
    rng = np.random.default_rng(3)
    a = Examples((rng.random(200) > 0.3).astype(float), _error, "k")
    b = Examples((rng.random(200) > 0.35).astype(float), _error, "k")
    p = bootstrap_p(a, b, threshold=0.0, alternative="greater", samples=400, seed=7)
    draws = np.random.default_rng(7)
    diffs = []
    for _ in range(400):
        i = draws.integers(0, 200, 200)
        diffs.append(_error(a.values[i]) - _error(b.values[i]))
    assert p == pytest.approx((1 + np.sum(np.array(diffs) <= 0)) / 401)


def test_bootstrap_interval_agrees_with_scipy() -> None:
    rng = np.random.default_rng(0)
    correct = (rng.random(1000) > 0.2).astype(float)
    low, high = bootstrap_interval(Examples(correct, _error, "k"), samples=4000)
    ref = sps.bootstrap(
        (correct,), _error, method="percentile", n_resamples=4000, vectorized=False, random_state=1
    ).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.4) and high == pytest.approx(ref.high, abs=0.4)
    assert low < _error(correct) < high
