"""Results stores: finished runs exported without checkpoints, read like any results folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from fabricate import fabricate_run

from robench.cli import main
from robench.reporting import build_report, check_claims
from robench.runs import export_runs

CLAIMS = """
[defaults.recipe]
config = "quick"
model = "wrn_16_2"
dataset = "cifar10-jpeg"
epochs = 3

[[claim]]
check = "ipmix.corruption_error < baseline.corruption_error"
"""


def test_a_store_reads_like_the_results_it_came_from(tmp_path: Path, five_methods: Path) -> None:
    for run in (five_methods / "runs").iterdir():
        (run / "checkpoint.pt").write_bytes(b"weights")
        (run / ".lock").write_text("")
    store = tmp_path / "store"
    exported = export_runs(five_methods, store, config="quick")
    assert len(exported) == 15  # the paper-recipe run is of another config
    for run in exported:
        names = {p.name for p in run.iterdir()}
        assert names == {"metrics.json", "records.npz", "tables"}
        assert (run / "metrics.json").read_bytes() == (
            five_methods / "runs" / run.name / "metrics.json"
        ).read_bytes()
    claims = tmp_path / "claims.toml"
    claims.write_text(CLAIMS)
    kept = five_methods / "runs" / next(iter(sorted((five_methods / "runs").iterdir()))).name
    assert kept.joinpath("checkpoint.pt").is_file()  # the source is left as it was
    ours = check_claims(claims, store).drop(columns="recipe")
    theirs = check_claims(claims, five_methods).drop(columns="recipe")
    pd.testing.assert_frame_equal(ours, theirs)
    board = build_report(store, plots=False).leaderboard
    source = build_report(five_methods, plots=False).leaderboard
    pd.testing.assert_frame_equal(
        board, source[source["config_name"] == "quick"].reset_index(drop=True)
    )


def test_export_replaces_a_run_whole(tmp_path: Path, results: Path) -> None:
    run = fabricate_run(results, "baseline", 0)
    store = tmp_path / "store"
    export_runs(results, store)
    (store / "runs" / run.name / "stale.csv").write_text("old")
    export_runs(results, store)
    assert not (store / "runs" / run.name / "stale.csv").exists()
    assert [p.name for p in (store / "runs").iterdir()] == [run.name]  # no staging left behind


def test_export_cli(tmp_path: Path, results: Path, capsys) -> None:
    empty = tmp_path / "empty"
    assert main(["export", str(tmp_path / "store"), "--results-dir", str(empty)]) == 2
    assert "no finished runs" in capsys.readouterr().err
    fabricate_run(results, "baseline", 0)
    args = ["export", str(tmp_path / "store"), "--results-dir", str(results)]
    assert main([*args, "--config", "paper"]) == 2
    assert "no finished runs of config 'paper'" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()
    assert main(args) == 0
    assert "exported 1 runs" in capsys.readouterr().out
