"""The committed reference store (baselines/reference/quick_suite, made with robench export from
the 15 quick-recipe runs trained on 2 CPU cores on 2026-12-06): the claims robench ships are
judged on it, so a change to the checker, the report or the stored results that changes a
verdict fails here (.ci/run also runs ``robench check`` on it); see docs/results.md."""

from __future__ import annotations

from pathlib import Path

from robench.cli import main
from robench.reporting import check_claims

REPO = Path(__file__).resolve().parents[2]
STORE = REPO / "baselines" / "reference" / "quick_suite"
CLAIMS = REPO / "baselines" / "claims" / "quick.toml"


def test_the_store_holds_the_fifteen_quick_runs_without_checkpoints() -> None:
    runs = sorted((STORE / "runs").iterdir())
    assert len(runs) == 15
    for run in runs:
        assert (run / "metrics.json").is_file() and (run / "records.npz").is_file()
        assert not (run / "checkpoint.pt").exists()


def test_the_quick_claims_on_the_store() -> None:
    table = check_claims(CLAIMS, STORE)
    assert len(table) == 8 and set(table["n"]) == {"3 vs 3"}
    for row in table.itertuples():
        assert row.status == "PASS", (row.claim, row.note)


def test_the_quick_claims_fail_without_their_runs(tmp_path: Path, capsys) -> None:
    assert main(["check", str(CLAIMS), "--results-dir", str(STORE)]) == 0
    assert "8 PASS" in capsys.readouterr().out
    assert main(["check", str(CLAIMS), "--results-dir", str(tmp_path)]) == 1
