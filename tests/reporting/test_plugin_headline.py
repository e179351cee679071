"""Headline values declared by a metric plugin reach the leaderboard, the page and the plots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fabricate import fabricate_run

from robench.errors import RobenchError
from robench.evaluation.base import METRICS, ValueInfo
from robench.reporting import build_report
from robench.reporting.leaderboard import headline_metrics


def _blur_error() -> None:
    """A stand-in metric plugin (never called here: the runs are fabricated)."""


@pytest.fixture
def plugin_metric() -> Iterator[list[str]]:
    _blur_error.values = {
        "blur_error": ValueInfo("Error under blur", headline=True),
        "blur_sigma": {"title": "Blur sigma", "unit": "px"},  # plain dicts work too
    }
    built_in = list(headline_metrics())
    METRICS.register("blur", description="test plugin", origin="blur-plugin 0.1")(_blur_error)
    yield built_in
    METRICS.unregister("blur")


def test_a_plugin_headline_follows_the_built_in_ones(plugin_metric) -> None:
    names, built_in = list(headline_metrics()), plugin_metric
    assert names == [*built_in, "blur_error"]
    assert headline_metrics()["blur_error"].title == "Error under blur"


def test_plugin_headline_values_get_columns_a_page_column_and_a_bar_chart(
    plugin_metric, results: Path
) -> None:
    for method, base in (("baseline", 40.0), ("ipmix", 30.0)):
        for seed in (0, 1):
            extra = {"blur": {"blur_error": base + seed, "blur_sigma": 1.5}}
            fabricate_run(results, method, seed, extra=extra)
    report = build_report(results)
    board = pd.read_csv(results / "leaderboard.csv").set_index("method")
    assert board.loc["ipmix", "blur_error"] == pytest.approx(30.5)
    assert board.loc["baseline", "blur_error_std"] == pytest.approx(0.7071, rel=1e-3)
    assert "blur_sigma" not in board  # not a headline value: runs.csv only
    assert "bar_blur_error" in {p.name for p in report.plots}
    assert (results / "plots" / "bar_blur_error.png").is_file()
    assert "Error under blur (%) ↓" in (results / "report.md").read_text()
    assert "Error under blur<br><small>% ↓" in (results / "report.html").read_text()


def test_malformed_values_are_an_error_naming_the_plugin(plugin_metric) -> None:
    _blur_error.values = {"blur_error": {"title": "Error under blur", "colour": "red"}}
    with pytest.raises(RobenchError, match="metric 'blur' declares malformed values"):
        headline_metrics()
