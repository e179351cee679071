"""A report replaces the previous one as a whole: no tables or plots of deleted runs survive it,
and a report killed while moving its files into place is cleaned up by the next one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from robench.reporting import build, build_report

STORE = Path(__file__).resolve().parents[2] / "baselines" / "reference" / "quick_suite" / "runs"


def _copy_runs(results: Path, *methods: str) -> Path:
    """Seed 0 of ``methods`` from the reference store."""
    for run in STORE.iterdir():
        if run.name.split("_")[2] in methods and "-s0-" in run.name:  # <config>_<method>_...
            shutil.copytree(run, results / "runs" / run.name)
    return results


def _outputs(results: Path) -> set[str]:
    """Every file of the folder but the runs, the lock and the manifest."""
    skip = {"runs", ".report.lock", build.MANIFEST}
    return {
        p.relative_to(results).as_posix()
        for p in results.rglob("*")
        if p.is_file() and p.relative_to(results).parts[0] not in skip
    }


@pytest.mark.fault(
    "runs deleted between two reports",
    "the second report's files are exactly those of a fresh report on the runs left",
)
def test_a_report_drops_what_belonged_to_deleted_runs(tmp_path: Path) -> None:
    results = _copy_runs(tmp_path / "r", "baseline", "ipmix", "cutmix")
    build_report(results, published=None)
    assert "plots/bar_mce_vs_baseline.png" in _outputs(results)
    for run in (results / "runs").glob("quick_suite_baseline_*"):
        shutil.rmtree(run)  # no baseline: no mCE against it, so no mCE plots
    build_report(results, published=None)
    fresh = _copy_runs(tmp_path / "fresh", "ipmix", "cutmix")
    build_report(fresh, published=None)
    assert _outputs(results) == _outputs(fresh) != set()
    assert "plots/bar_mce_vs_baseline.png" not in _outputs(results)
    for run in (results / "runs").iterdir():
        shutil.rmtree(run)
    build_report(results, published=None)
    assert _outputs(results) == {"leaderboard.csv"}  # every old table and plot is gone


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


@pytest.mark.fault(
    "report killed while moving its files into place",
    "the next report leaves exactly the files of a fresh report",
)
def test_a_killed_report_is_cleaned_up_by_the_next(tmp_path: Path, monkeypatch) -> None:
    results = _copy_runs(tmp_path / "r", "baseline", "ipmix")
    build_report(results, published=None)
    for run in (results / "runs").glob("quick_suite_baseline_*"):
        shutil.rmtree(run)
    real_replace, real_publish, moved = build.os.replace, build._publish, []

    def replace_then_die(src: Path, dst: Path) -> None:
        if len(moved) == 3:  # the widened manifest and two files are in place
            raise _Killed
        moved.append(dst)
        real_replace(src, dst)

    def publish_and_die(staging: Path, results_dir: Path) -> None:
        with monkeypatch.context() as m:
            m.setattr(build.os, "replace", replace_then_die)
            real_publish(staging, results_dir)

    monkeypatch.setattr(build, "_publish", publish_and_die)
    with pytest.raises(_Killed):
        build_report(results, published=None)
    monkeypatch.undo()
    assert (results / build.STAGING).is_dir()  # half-moved: old and new files mixed
    build_report(results, published=None)
    fresh = _copy_runs(tmp_path / "fresh", "ipmix")
    build_report(fresh, published=None)
    assert _outputs(results) == _outputs(fresh)
    assert not (results / build.STAGING).exists()
