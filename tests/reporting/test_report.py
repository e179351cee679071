"""``robench report`` end to end on fabricated runs: CSVs, plots, report.md and report.html."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest

from robench.cli import main
from robench.reporting import build_report, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_writes_tables_plots_and_pages(five_methods: Path) -> None:
    rep = build_report(five_methods)
    names = {p.name for p in rep.files.values()}
    assert names >= {
        "leaderboard.csv",
        "runs.csv",
        "metrics_long.csv",
        "corruption_by_corruption.csv",
        "corruption_by_severity.csv",
        "published_comparison.csv",
        "report.md",
        "report.html",
    }
    assert all(p.is_file() and p.stat().st_size > 0 for p in rep.files.values())
    board = pd.read_csv(five_methods / "leaderboard.csv")
    assert len(board) == 6 and sorted(board["n_seeds"]) == [1, 3, 3, 3, 3, 3]
    assert list(board["method"][:5]) == ["baseline", "cutmix", "augmix", "pixmix", "ipmix"]

    plots = {p.name for p in rep.plots}
    assert plots >= {
        "bar_clean_error",
        "bar_corruption_error",
        "bar_mce_vs_baseline",
        "bar_ood_auroc_mean",
        "summary",
        "heatmap_corruption",
        "error_vs_severity",
        "reliability",
    }
    for plot in rep.plots:
        assert plot.png.read_bytes()[:8] == PNG_MAGIC and plot.png.stat().st_size > 5000
        assert plot.svg.read_text().lstrip().startswith("<?xml") and "<svg" in plot.svg.read_text()

    page = (five_methods / "report.html").read_text()
    assert "<table" in page and "Leaderboard" in page and "Per corruption" in page
    assert "Closest published numbers" in page and "cifar10-jpeg vs cifar10" in page
    # self-contained: every image is embedded, and each is one of the PNGs written
    sources = re.findall(r"<img[^>]*src='([^']*)'", page)
    assert len(sources) == len(rep.plots)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    assert embedded == {p.png.read_bytes() for p in rep.plots}
    ipmix = board[board["label"] == "ipmix"].iloc[0]
    cell = f"{ipmix['corruption_error']:.2f}<small> ± {ipmix['corruption_error_std']:.2f}</small>"
    assert cell in page
    # human headers with unit and direction, the best mean per column and setting marked, sorting
    assert "Corruption error<br><small>% ↓</small>" in page and "OOD AUROC<br><small>% ↑" in page
    quick = board[board["setting"] == board["setting"].iloc[0]]
    best = quick.loc[quick["corruption_error"].idxmin()]
    assert re.search(rf"class='best'[^>]*>{best['corruption_error']:.2f}<small>", page)
    assert "<table class='sortable'>" in page and "addEventListener('click'" in page

    md = (five_methods / "report.md").read_text()
    assert "| method | setting | seeds |" in md and "(plots/summary.png)" in md


def test_report_without_plots_and_the_old_entry_point(five_methods: Path) -> None:
    rep = build_report(five_methods, plots=False, published=None)
    assert rep.plots == [] and not (five_methods / "plots").exists()
    assert rep.matching is None and "Published" not in (five_methods / "report.md").read_text()
    table, path = report(five_methods, plots=False)
    assert path == five_methods / "leaderboard.csv" and len(table) == 6


def test_cli_report(five_methods: Path, tmp_path: Path, capsys) -> None:
    assert main(["report", "--results-dir", str(five_methods), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "ipmix" in out and "Corruption error (%) ↓" in out and "leaderboard.csv" in out
    empty = tmp_path / "empty"
    assert main(["report", "--results-dir", str(empty)]) == 0
    assert "no finished runs" in capsys.readouterr().out
    assert (empty / "leaderboard.csv").is_file()


def test_cli_report_refuses_a_missing_published_file(five_methods: Path, capsys) -> None:
    args = ["report", "--results-dir", str(five_methods), "--no-plots", "--published", "nope.csv"]
    assert main(args) == 2
    assert "'nope.csv' not found" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--help", "--methods"])
def test_run_all_checks_its_arguments(repo_root: Path, flag: str) -> None:
    import os
    import subprocess
    import sys

    args = [flag] if flag == "--help" else [flag, "baseline ipmx"]
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(repo_root)}
    done = subprocess.run(
        ["bash", str(repo_root / "run_all.sh"), *args], capture_output=True, text=True, env=env
    )
    if flag == "--help":
        assert done.returncode == 0 and "--paper" in done.stdout
    else:
        assert done.returncode == 2
        assert "method 'ipmx' is not registered" in done.stderr and "ipmix" in done.stderr
