"""The report's mCE columns beyond the baseline: any reference run, and AlexNet (ImageNet-C)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from fabricate import fabricate_run

from robench.errors import ConfigError
from robench.evaluation.functional import alexnet_mce, mce
from robench.reporting.tables import gather_runs
from robench.runs import read_metrics


def _errors(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "tables" / "corruption_errors.csv")


def _clean(run: Path) -> float:
    return read_metrics(run)["metrics"]["clean"]["clean_error"]


def test_any_run_can_be_the_mce_reference(results: Path) -> None:
    base = fabricate_run(results, "baseline", 0)
    augmix = fabricate_run(results, "augmix", 0)
    ipmix = fabricate_run(results, "ipmix", 0)
    runs = gather_runs(results, mce_reference=augmix.name).set_index("run_id")
    expected = mce(
        _errors(ipmix),
        _errors(augmix),
        clean_error=_clean(ipmix),
        reference_clean_error=_clean(augmix),
    )
    assert runs.loc[ipmix.name, "mce_vs_reference"] == pytest.approx(expected["mce"])
    assert runs.loc[ipmix.name, "relative_mce_vs_reference"] == pytest.approx(
        expected["relative_mce"]
    )
    assert runs.loc[augmix.name, "mce_vs_reference"] == pytest.approx(100)
    assert runs.loc[base.name, "mce_vs_reference"] > 100  # the baseline is less robust
    assert runs.loc[base.name, "mce_vs_baseline"] == pytest.approx(100)  # still there
    assert "mce_vs_reference" not in gather_runs(results)
    with pytest.raises(ConfigError, match="not a finished run"):
        gather_runs(results, mce_reference="nope")


def test_relative_alexnet_mce_comes_with_the_metric_mce(results: Path) -> None:
    run = fabricate_run(results, "ipmix", 0)  # 4 ImageNet-C corruption names x 5 severities
    other = fabricate_run(results, "augmix", 0)  # a CIFAR-C run: no mce_alexnet
    doc = json.loads((run / "metrics.json").read_text())
    expected = alexnet_mce(_errors(run), clean_error=_clean(run))
    doc["metrics"]["corruption"]["mce_alexnet"] = expected["mce"]
    (run / "metrics.json").write_text(json.dumps(doc))
    runs = gather_runs(results).set_index("run_id")
    assert runs.loc[run.name, "mce_alexnet"] == pytest.approx(expected["mce"])
    assert runs.loc[run.name, "relative_mce_alexnet"] == pytest.approx(expected["relative_mce"])
    assert math.isnan(runs.loc[other.name, "relative_mce_alexnet"])
