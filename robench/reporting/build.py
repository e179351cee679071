"""``robench report``: every run under ``results/`` gathered into tables, plots and a page.

Writes, under the results folder: ``leaderboard.csv`` (one row per recipe), ``runs.csv`` (one row
per run), ``metrics_long.csv`` (one row per run, metric, corruption, severity),
``corruption_by_corruption.csv`` and ``corruption_by_severity.csv`` (method x corruption and
method x severity), ``published_comparison.csv``, ``plots/*.png|svg``, ``report.md`` and
``report.html``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from robench.reporting.leaderboard import leaderboard
from robench.reporting.page import write_pages
from robench.reporting.plots import Plot, make_plots
from robench.reporting.published import PUBLISHED_CSV, compare, load_published
from robench.reporting.tables import (
    by_corruption,
    by_severity,
    gather_runs,
    long_table,
    write_csv,
)


@dataclass
class Report:
    """Everything ``robench report`` computed, and the files it wrote (by description)."""

    results_dir: Path
    runs: pd.DataFrame
    leaderboard: pd.DataFrame
    long: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_corruption: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_severity: pd.DataFrame = field(default_factory=pd.DataFrame)
    matching: pd.DataFrame | None = None
    closest: pd.DataFrame | None = None
    plots: list[Plot] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def build_report(
    results_dir: str | Path = "results",
    *,
    plots: bool = True,
    published: str | Path | None = PUBLISHED_CSV,
    mce_reference: str | None = None,
) -> Report:
    """Gather every run and write the tables, plots (unless ``plots=False``) and pages.

    ``published``: the published-numbers CSV to compare with (None, or a missing default file:
    no comparison). ``mce_reference``: a run id that normalises every run's mCE as well.
    """
    results_dir = Path(results_dir)
    runs = gather_runs(results_dir, mce_reference=mce_reference)
    if runs.empty:
        path = write_csv(pd.DataFrame(columns=runs.columns), results_dir / "leaderboard.csv")
        return Report(results_dir, runs, runs, files={"leaderboard, one row per recipe": path})
    board = leaderboard(runs, results_dir)
    long = long_table(runs, results_dir)
    rep = Report(
        results_dir, runs, board, long, by_corruption(long, board), by_severity(long, board)
    )
    if published is not None and (Path(published) != PUBLISHED_CSV or PUBLISHED_CSV.is_file()):
        augment = dict(zip(runs["recipe"], runs["augment"], strict=True))
        rep.matching, rep.closest = compare(board, augment, load_published(published))
    tables = {
        "leaderboard, one row per recipe": (board, "leaderboard.csv"),
        "one row per run": (runs.drop(columns=["augment"]), "runs.csv"),
        "one row per run, metric, corruption and severity": (long, "metrics_long.csv"),
        "method x corruption error": (rep.by_corruption, "corruption_by_corruption.csv"),
        "method x severity error": (rep.by_severity, "corruption_by_severity.csv"),
    }
    if rep.matching is not None and rep.closest is not None:
        both = pd.concat(
            [rep.matching.assign(match="same recipe"), rep.closest.assign(match="closest")]
        )
        tables["published numbers beside ours"] = (both, "published_comparison.csv")
    for what, (table, name) in tables.items():
        if not table.empty:
            rep.files[what] = write_csv(table, results_dir / name)
    if plots:
        rep.plots = make_plots(board, rep.by_corruption, rep.by_severity, runs, results_dir)
    rep.files["this report (Markdown)"] = results_dir / "report.md"
    rep.files["this report (self-contained HTML)"] = results_dir / "report.html"
    write_pages(rep)
    return rep


def report(results_dir: str | Path = "results", *, plots: bool = True) -> tuple[pd.DataFrame, Path]:
    """Gather every run and write the report; returns (leaderboard, path of leaderboard.csv)."""
    rep = build_report(results_dir, plots=plots)
    return rep.leaderboard, rep.results_dir / "leaderboard.csv"
