"""Tables from fabricated runs: leaderboard statistics, mCE, the long format and the pivots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fabricate import CORRUPTIONS, fabricate_run

from robench.reporting.examples import run_examples
from robench.reporting.leaderboard import BOOTSTRAP, T_SEEDS, leaderboard
from robench.reporting.stats import bootstrap_interval
from robench.reporting.tables import by_corruption, by_severity, gather_runs, long_table
from robench.runs import read_metrics

T_975_2 = 4.302652729911275  # Student t quantile, 2 degrees of freedom


def test_leaderboard_mean_std_and_t_interval_by_hand(results: Path) -> None:
    for seed, err in zip((0, 1, 2), (10.0, 12.0, 17.0), strict=True):
        fabricate_run(results, "ipmix", seed, values={"clean_error": err})
    board = leaderboard(gather_runs(results), results)
    row = board.iloc[0]
    assert (row["n_seeds"], row["seeds"], row["ci_method"]) == (3, "0 1 2", T_SEEDS)
    assert row["clean_error"] == pytest.approx(13.0)
    assert row["clean_error_std"] == pytest.approx(math.sqrt(13))
    half = T_975_2 * math.sqrt(13) / math.sqrt(3)
    assert row["clean_error_ci_low"] == pytest.approx(13 - half)
    assert row["clean_error_ci_high"] == pytest.approx(13 + half)


def test_one_seed_gets_a_bootstrap_interval_from_its_records(results: Path) -> None:
    metrics = ("clean", "calibration", "corruption", "flip")
    run_dir = fabricate_run(results, "augmix", 0, metrics=metrics)
    board = leaderboard(gather_runs(results), results)
    row = board.iloc[0]
    assert row["ci_method"] == BOOTSTRAP and math.isnan(row["clean_error_std"])
    # by hand from the records: correct = pred == label, error resampled over examples
    with np.load(run_dir / "records.npz") as z:
        correct = (z["clean/pred"] == z["clean/label"]).astype(float)
        per_example = z["corruption/correct"].mean(axis=(0, 1))
    boot = np.random.default_rng(0)
    draws = [100 * (1 - correct[boot.integers(0, len(correct), len(correct))].mean())]
    draws += [100 * (1 - correct[boot.integers(0, len(correct), len(correct))].mean())
              for _ in range(1999)]  # fmt: skip
    assert row["clean_error_ci_low"] == pytest.approx(np.percentile(draws, 2.5))
    assert row["clean_error_ci_high"] == pytest.approx(np.percentile(draws, 97.5))
    assert row["clean_error_ci_low"] < row["clean_error"] < row["clean_error_ci_high"]
    examples = run_examples(run_dir, "testhash")
    corruption = examples["corruption_error"]
    assert corruption.statistic(corruption.values) == pytest.approx(row["corruption_error"])
    assert np.allclose(examples["corruption_error"].values, per_example)
    low, high = bootstrap_interval(examples["corruption_error"])
    assert (row["corruption_error_ci_low"], row["corruption_error_ci_high"]) == (low, high)
    assert math.isnan(row["mfp_ci_low"])  # no per-example records for flips: no interval
    assert math.isnan(row["rms_calibration_error_ci_low"])  # a biased bootstrap: none


def test_recipes_are_split_by_options_config_and_epochs(results: Path) -> None:
    fabricate_run(results, "augmix", 0)
    fabricate_run(results, "augmix", 1)
    fabricate_run(results, "augmix", 0, options={"jsd": False})
    fabricate_run(results, "augmix", 0, epochs=100)
    fabricate_run(results, "augmix", 0, config="other")
    board = leaderboard(gather_runs(results), results)
    assert len(board) == 4
    assert sorted(board["n_seeds"]) == [1, 1, 1, 2]
    assert set(board["label"]) == {"augmix", "augmix {jsd = false}"}
    assert set(board["method_options"]) == {"", "{jsd = false}"}


def _mce_by_hand(errors: pd.DataFrame, ref: pd.DataFrame, clean: float, ref_clean: float):
    both = errors.merge(ref, on=["corruption", "severity"], suffixes=("", "_ref"))
    ce, rel = [], []
    for _, g in both.groupby("corruption"):
        ce.append(g["error"].sum() / g["error_ref"].sum())
        rel.append((g["error"] - clean).sum() / (g["error_ref"] - ref_clean).sum())
    return 100 * np.mean(ce), 100 * np.mean(rel)


def test_mce_uses_the_same_seed_baseline_of_the_same_recipe(results: Path) -> None:
    base = {s: fabricate_run(results, "baseline", s) for s in (0, 1)}
    run = fabricate_run(results, "ipmix", 1)
    lone = fabricate_run(results, "ipmix", 0, config="paper")  # no baseline in that recipe
    runs = gather_runs(results).set_index("run_id")
    errors = pd.read_csv(run / "tables" / "corruption_errors.csv")
    ref = pd.read_csv(base[1] / "tables" / "corruption_errors.csv")
    clean = read_metrics(run)["metrics"]["clean"]["clean_error"]
    ref_clean = read_metrics(base[1])["metrics"]["clean"]["clean_error"]
    mce, rel = _mce_by_hand(errors, ref, clean, ref_clean)
    row = runs.loc[run.name]
    assert row["mce_vs_baseline"] == pytest.approx(mce)
    assert row["relative_mce_vs_baseline"] == pytest.approx(rel)
    assert mce < 100  # ipmix keeps a third of the baseline's corruption damage
    assert runs.loc[base[0].name, "mce_vs_baseline"] == pytest.approx(100)
    assert math.isnan(runs.loc[lone.name, "mce_vs_baseline"])


def test_mce_is_empty_when_the_baseline_saw_other_corruptions(results: Path) -> None:
    fabricate_run(results, "baseline", 0, corruptions=CORRUPTIONS[:2])
    run = fabricate_run(results, "ipmix", 0)
    assert math.isnan(gather_runs(results).set_index("run_id").loc[run.name, "mce_vs_baseline"])


def test_long_table_round_trips_to_the_run_files(results: Path) -> None:
    dirs = [fabricate_run(results, m, 0) for m in ("baseline", "ipmix")]
    runs = gather_runs(results)
    long = long_table(runs, results)
    for run_dir in dirs:
        mine = long[long["run_id"] == run_dir.name]
        # the per-(corruption, severity) rows pivot back into corruption_errors.csv
        cells = mine[(mine["metric"] == "corruption_error") & mine["severity"].notna()]
        wide = cells.pivot(index="corruption", columns="severity", values="value")
        table = pd.read_csv(run_dir / "tables" / "corruption_errors.csv")
        expected = table.pivot(index="corruption", columns="severity", values="error")
        pd.testing.assert_frame_equal(
            wide, expected, check_names=False, check_dtype=False, check_column_type=False
        )
        # the scalars give back every value of metrics.json
        scalars = mine[mine["severity"].isna()]
        back = {}
        for r in scalars.itertuples():
            name = r.metric if pd.isna(r.corruption) else f"{r.metric}_{r.corruption}"
            back[name] = r.value
        doc = read_metrics(run_dir)
        flat = {k: v for values in doc["metrics"].values() for k, v in values.items()}
        assert {k: back[k] for k in flat} == pytest.approx(flat)
        assert "mce_vs_baseline" in back
    # RobustBench's layout: (corruption, severity) columns x model rows
    rb = long[long["severity"].notna() & (long["metric"] == "corruption_error")].pivot_table(
        index="method", columns=["corruption", "severity"], values="value"
    )
    assert rb.shape == (2, len(CORRUPTIONS) * 5)


def test_pivots_per_corruption_and_severity(results: Path) -> None:
    runs = [fabricate_run(results, "pixmix", s) for s in (0, 1)]
    all_runs = gather_runs(results)
    board = leaderboard(all_runs, results)
    long = long_table(all_runs, results)
    per_c, per_s = by_corruption(long, board), by_severity(long, board)
    tables = [pd.read_csv(r / "tables" / "corruption_errors.csv") for r in runs]
    fog = np.mean([t[t.corruption == "fog"]["error"].mean() for t in tables])
    assert per_c.loc[0, "fog"] == pytest.approx(fog)
    assert list(per_c.columns[-len(CORRUPTIONS) - 1 :]) == [*CORRUPTIONS, "mean"]
    assert per_c.loc[0, "mean"] == pytest.approx(board.loc[0, "corruption_error"])
    s3 = np.mean([t[t.severity == 3]["error"].mean() for t in tables])
    assert per_s.loc[0, "s3"] == pytest.approx(s3)
    assert per_s.loc[0, "clean"] == pytest.approx(board.loc[0, "clean_error"])
    assert per_s.loc[0, "s5"] > per_s.loc[0, "s1"]
