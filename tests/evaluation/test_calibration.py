"""Calibration: the reference RMS (goldens), hand-computed RMS/ECE cases and the metric plugin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robench.data.datasets import DataIdentity, ImageData
from robench.evaluation.base import EvalContext
from robench.evaluation.calibration import calibration
from robench.evaluation.functional import (
    expected_calibration_error,
    reliability_table,
    rms_calibration_error,
)

GOLDENS = Path(__file__).resolve().parents[3] / "shared" / "goldens" / "metrics.json"


def _goldens() -> list[dict]:
    if not GOLDENS.is_file():
        pytest.skip(f"goldens not found at {GOLDENS}")
    return json.loads(GOLDENS.read_text())["calibration"]


def test_rms_reference_mode_matches_goldens() -> None:
    cases = _goldens()
    assert cases
    for case in cases:
        got = rms_calibration_error(
            np.array(case["confidence"]), np.array(case["correct"]), skip_last_bin=True
        )
        assert got == pytest.approx(case["rms_reference_skip_last_bin"], abs=1e-6), case["kind"]


def _two_bins() -> tuple[np.ndarray, np.ndarray]:
    """Bin 1: confidence 0.6, accuracy 0.5; bin 2: confidence 0.9, accuracy 0.7 (shuffled)."""
    conf = np.r_[np.full(100, 0.6), np.full(100, 0.9)]
    correct = np.r_[np.arange(100) < 50, np.arange(100) < 70]
    order = np.random.default_rng(0).permutation(200)
    return conf[order], correct[order]


def test_rms_hand_computed_with_and_without_last_bin() -> None:
    conf, correct = _two_bins()
    assert rms_calibration_error(conf, correct) == pytest.approx(np.sqrt(0.5 * 0.01 + 0.5 * 0.04))
    assert rms_calibration_error(conf, correct, skip_last_bin=True) == pytest.approx(
        np.sqrt(0.5 * 0.01)
    )


def test_rms_last_bin_absorbs_the_remainder() -> None:
    # 250 examples -> bins of 100 and 150; the top 150 all have confidence 0.9, accuracy 0.7.
    conf = np.r_[np.full(100, 0.6), np.full(150, 0.9)]
    correct = np.r_[np.arange(100) < 50, np.arange(150) < 105]
    expected = np.sqrt(100 / 250 * 0.1**2 + 150 / 250 * 0.2**2)
    assert rms_calibration_error(conf, correct) == pytest.approx(expected)


def test_rms_fewer_examples_than_a_bin_is_one_bin() -> None:
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 0, 1, 0])
    assert rms_calibration_error(conf, correct) == pytest.approx(abs(conf.mean() - 0.5))


def test_ece_hand_computed() -> None:
    conf = np.array([0.05, 0.05, 0.95, 0.95])
    correct = np.array([0, 1, 1, 1])
    # bin 1: |0.5 - 0.05| * 2/4; bin 15: |1 - 0.95| * 2/4
    assert expected_calibration_error(conf, correct) == pytest.approx(0.225 + 0.025)


def test_reliability_bins_are_right_closed_and_zero_goes_first() -> None:
    table = reliability_table(
        np.array([0.0, 0.5, 0.5 + 1e-9, 1.0]), np.array([1, 0, 1, 1]), n_bins=10
    )
    assert list(table["count"]) == [1, 0, 0, 0, 1, 1, 0, 0, 0, 1]
    assert table.loc[4, "accuracy"] == 0 and table.loc[5, "accuracy"] == 1
    assert np.isnan(table.loc[1, "accuracy"])
    assert table["bin_upper"].iloc[-1] == 1.0


def test_exactly_calibrated_blocks_score_zero() -> None:
    # 60 blocks of 100 examples at confidence k/100 with exactly k of them correct.
    levels = np.arange(40, 100)
    conf = np.repeat(levels / 100, 100)
    correct = np.concatenate([np.arange(100) < k for k in levels])
    assert rms_calibration_error(conf, correct) == pytest.approx(0, abs=1e-12)
    assert expected_calibration_error(conf, correct) == pytest.approx(0, abs=1e-12)


def test_sampled_calibrated_is_near_zero_and_overconfident_is_large() -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.4, 1.0, 50_000)
    calibrated = rng.random(conf.size) < conf
    overconfident = rng.random(conf.size) < conf - 0.3
    # Bins of 100 carry ~0.045 of sampling noise; big bins show the calibration itself.
    assert rms_calibration_error(conf, calibrated, bin_size=5000) < 0.01
    assert expected_calibration_error(conf, calibrated) < 0.01
    assert rms_calibration_error(conf, overconfident) == pytest.approx(0.3, abs=0.01)
    assert expected_calibration_error(conf, overconfident) == pytest.approx(0.3, abs=0.01)


def test_empty_or_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        rms_calibration_error(np.array([]), np.array([]))
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([0.5, 0.6]), np.array([1]))


def _toy_data(n: int = 300, classes: int = 4) -> ImageData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % classes
    identity = DataIdentity("toy", "test", n, "0", "memory")
    return ImageData(images, labels, [f"c{k}" for k in range(classes)], identity)


def test_metric_reports_percent_of_the_pure_functions() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    data = _toy_data()
    ctx = EvalContext(batch_size=128, progress=False)
    result = calibration(model, data, ctx, skip_last_bin=True)
    conf, correct = result.records["confidence"], result.records["correct"]
    assert conf.shape == correct.shape == (300,)
    with torch.no_grad():
        probs = model(data.images.float() / 255).softmax(1)
    np.testing.assert_allclose(conf, probs.max(1).values.numpy(), atol=1e-6)
    rms = rms_calibration_error(conf, correct, skip_last_bin=True)
    assert result.values["rms_calibration_error"] == pytest.approx(100 * rms)
    assert result.values["ece"] == pytest.approx(100 * expected_calibration_error(conf, correct))
    assert set(result.values) == {"rms_calibration_error", "ece"}
    assert bool(result.tables["settings"].loc[0, "skip_last_bin"]) is True
    assert result.tables["reliability"]["count"].sum() == 300


def test_metric_rejects_unknown_options() -> None:
    with pytest.raises(TypeError):
        calibration(torch.nn.Identity(), _toy_data(), EvalContext(), bins=10)
