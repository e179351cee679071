"""``robench report``: every run under ``results/`` gathered into tables, plots and a page.

Writes, under the results folder: ``leaderboard.csv`` (one row per recipe), ``runs.csv`` (one row
per run), ``metrics_long.csv`` (one row per run, metric, corruption, severity),
``corruption_by_corruption.csv`` and ``corruption_by_severity.csv`` (method x corruption and
method x severity), ``published_comparison.csv``, ``plots/*.png|svg``, ``report.md`` and
``report.html``.

A report replaces the previous one as a whole: it is written into a staging folder, moved into
place, and then every file the previous report wrote that this one did not (the tables of a run
deleted since, a plot no longer drawn) is removed. ``.report-files`` lists what the last report
wrote; it is widened to both lists before anything moves, so the next report cleans up after
one that was killed half-way.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import pandas as pd

from robench.io import locked_file, write_text
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
    staging = results_dir / STAGING
    results_dir.mkdir(parents=True, exist_ok=True)
    with locked_file(results_dir / ".report.lock", lambda _: None):  # one report at a time
        shutil.rmtree(staging, ignore_errors=True)  # left by a killed report
        staging.mkdir()
        rep = _write(results_dir, staging, runs, plots, published)
        _publish(staging, results_dir)
    rep.files = {what: results_dir / path.name for what, path in rep.files.items()}
    rep.plots = [
        replace(p, png=results_dir / "plots" / p.png.name, svg=results_dir / "plots" / p.svg.name)
        for p in rep.plots
    ]
    return rep


def _write(
    results_dir: Path,
    out: Path,
    runs: pd.DataFrame,
    plots: bool,
    published: str | Path | None,
) -> Report:
    """The report of ``runs`` (read from ``results_dir``), its files written into ``out``."""
    if runs.empty:
        path = write_csv(pd.DataFrame(columns=runs.columns), out / "leaderboard.csv")
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
            rep.files[what] = write_csv(table, out / name)
    if plots:
        rep.plots = make_plots(
            board, rep.by_corruption, rep.by_severity, runs, results_dir, out / "plots"
        )
    rep.files["this report (Markdown)"] = out / "report.md"
    rep.files["this report (self-contained HTML)"] = out / "report.html"
    write_pages(rep, out)
    return rep


#: where a report is written before it replaces the previous one, and the list of what it wrote
STAGING, MANIFEST = ".report-staging", ".report-files"
#: what reports wrote before they kept a manifest
_UNLISTED = (
    "leaderboard.csv", "runs.csv", "metrics_long.csv", "corruption_by_corruption.csv",
    "corruption_by_severity.csv", "published_comparison.csv", "report.md", "report.html",
)  # fmt: skip


def _previous_outputs(results_dir: Path) -> set[str]:
    """The files the previous report wrote (relative POSIX paths inside ``results_dir``)."""
    manifest = results_dir / MANIFEST
    if not manifest.is_file():
        plots = results_dir / "plots"
        drawn = (
            [p for p in plots.glob("*") if p.suffix in (".png", ".svg")] if plots.is_dir() else []
        )
        return {n for n in _UNLISTED if (results_dir / n).is_file()} | {
            f"plots/{p.name}" for p in drawn
        }
    names = set(manifest.read_text().splitlines())
    # an edited manifest must not reach outside the folder
    return {n for n in names if n and ".." not in PurePosixPath(n).parts and not n.startswith("/")}


def _publish(staging: Path, results_dir: Path) -> None:
    """Move the staged report into ``results_dir``; remove what only the previous one wrote."""
    new = {p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()}
    old = _previous_outputs(results_dir)
    write_text(results_dir / MANIFEST, "".join(f"{n}\n" for n in sorted(old | new)))
    for name in sorted(new):
        (results_dir / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, results_dir / name)
    for name in sorted(old - new):
        (results_dir / name).unlink(missing_ok=True)
    plots = results_dir / "plots"
    if plots.is_dir() and not any(plots.iterdir()):
        plots.rmdir()
    write_text(results_dir / MANIFEST, "".join(f"{n}\n" for n in sorted(new)))
    shutil.rmtree(staging)


def report(results_dir: str | Path = "results", *, plots: bool = True) -> tuple[pd.DataFrame, Path]:
    """Gather every run and write the report; returns (leaderboard, path of leaderboard.csv)."""
    rep = build_report(results_dir, plots=plots)
    return rep.leaderboard, rep.results_dir / "leaderboard.csv"
