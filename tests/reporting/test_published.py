"""baselines/published.csv: parses, holds no NOT FOUND cells, and lines up with our runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fabricate import fabricate_run

from robench.errors import RobenchError
from robench.reporting.leaderboard import headline_metrics, leaderboard
from robench.reporting.published import PUBLISHED_CSV, compare, load_published
from robench.reporting.tables import gather_runs


def test_published_csv_parses_and_has_no_not_found_cells() -> None:
    rows = [line for line in PUBLISHED_CSV.read_text().splitlines() if not line.startswith("#")]
    assert not [line for line in rows if "NOT FOUND" in line.upper()]
    table = load_published()
    assert len(table) > 150
    assert set(table["metric"]) <= set(headline_metrics())
    assert set(table["dataset"]) == {"cifar10", "cifar100"}
    assert table["value"].between(0, 100).all() and table["source"].str.len().gt(0).all()
    assert not table.duplicated(["method", "model", "dataset", "epochs", "options", "metric"]).any()


@pytest.mark.parametrize(
    ("method", "model", "dataset", "metric", "value", "source"),
    [
        ("ipmix", "wrn_40_4", "cifar10", "corruption_error", 8.6, "Table 4"),
        ("baseline", "wrn_40_4", "cifar100", "clean_error", 21.3, "Table 3"),
        ("baseline", "wrn_40_4", "cifar100", "rms_calibration_error", 14.6, "Fig. 6"),
        ("pixmix", "wrn_40_4", "cifar100", "pgd_error", 91.3, "Fig. 7"),
        ("ipmix", "resnet18_cifar", "cifar10", "mfp", 1.7, "Table 18"),
        ("augmix", "wrn_40_2", "cifar100", "corruption_error", 35.9, "AugMix paper"),
    ],
)
def test_spot_cells_match_the_spec(method, model, dataset, metric, value, source) -> None:
    table = load_published()
    row = table[
        (table.method == method)
        & (table.model == model)
        & (table.dataset == dataset)
        & (table.metric == metric)
        & ~table.options.str.contains("jsd = false")
    ]
    assert len(row) == 1
    assert row.iloc[0]["value"] == value and source in row.iloc[0]["source"]


def test_a_malformed_published_file_is_refused(tmp_path: Path) -> None:
    text = PUBLISHED_CSV.read_text().replace(",4.4,0.05,", ",NOT FOUND,0.05,", 1)
    bad = tmp_path / "published.csv"
    bad.write_text(text)
    with pytest.raises(RobenchError, match="'NOT FOUND', not a number"):
        load_published(bad)


def test_same_recipe_and_closest_comparisons(results: Path) -> None:
    paper = {"config": "paper_wrn40_4", "model": "wrn_40_4", "dataset": "cifar10", "epochs": 100}
    fabricate_run(results, "ipmix", 0, **paper, values={"corruption_error": 9.0})
    fabricate_run(results, "ipmix", 0, values={"corruption_error": 30.0})  # quick, cifar10-jpeg
    fabricate_run(results, "ipmix", 0, **paper | {"dataset": "cifar100"}, options={"jsd": False})
    runs = gather_runs(results)
    board = leaderboard(runs, results)
    augment = dict(zip(runs["recipe"], runs["augment"], strict=True))
    same, closest = compare(board, augment, load_published())
    row = same[(same.metric == "corruption_error")].iloc[0]
    assert (row["ours"], row["published"]) == (9.0, 8.6)
    assert row["gap"] == pytest.approx(0.4) and "Table 4" in row["source"]
    assert set(same["setting"]) == {"paper_wrn40_4 / wrn_40_4 / cifar10 / 100 ep"}
    quick = closest[closest["setting"].str.startswith("quick")]
    c = quick[quick.metric == "corruption_error"].iloc[0]
    assert c["published"] == 8.6 and c["gap"] == pytest.approx(30.0 - 8.6)
    assert "dataset (cifar10-jpeg vs cifar10)" in c["differs_in"]
    assert "model (wrn_16_2 vs wrn_40_4)" in c["differs_in"]
    assert "epochs (3 vs 100)" in c["differs_in"]
    no_jsd = closest[closest["setting"].str.contains("cifar100")]
    assert len(no_jsd) and no_jsd["differs_in"].str.contains("options").all()
    assert isinstance(pd.concat([same, closest]), pd.DataFrame)
