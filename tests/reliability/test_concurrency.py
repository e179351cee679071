"""Two processes writing the same results directory at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from robench.errors import RobenchError
from robench.pipeline import train
from robench.reporting.tables import gather_runs
from robench.runs import run_id, run_lock

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.fault(
    "a second process trains a run that another process is training",
    "refused with one line naming the owner; the lock dies with its process",
)
def test_a_locked_run_is_refused_with_a_clear_error(tiny_config) -> None:
    cfg = tiny_config("train.epochs=1")
    run_dir = Path(cfg.results_dir) / "runs" / run_id(cfg)
    holder = subprocess.Popen(  # another process holds the run's lock
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from robench.runs import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n print('locked', flush=True); time.sleep(60)",
            str(run_dir),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RobenchError, match=r"is in use by robench process \d+"):
            train(cfg, progress=False)
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its process: no stale lock blocks the next run
    train(cfg, progress=False)


def test_the_lock_is_reentrant_within_a_process(tmp_path) -> None:
    with run_lock(tmp_path / "run"), run_lock(tmp_path / "run"):
        (tmp_path / "run" / "x").write_text("x")
    assert (tmp_path / "run" / "x").exists()


@pytest.mark.fault(
    "two processes train two runs into one results directory at once",
    "both finish; the report lists both",
)
def test_two_processes_train_two_runs_into_one_results_dir(tiny_npz, tmp_path) -> None:
    results = tmp_path / "results"

    def start(seed: int) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable, "-m", "robench.cli", "train", "--dataset", f"npz:{tiny_npz}",
                "--results-dir", str(results), "--epochs", "1", "--seed", str(seed), "--quiet",
                "--set", 'model.name="wrn_16_2"', "--set", "train.batch_size=16",
                "--set", 'evaluate.metrics=["clean"]',
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    procs = [start(1), start(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    subprocess.run(
        [sys.executable, "-m", "robench.cli", "report", "--results-dir", str(results)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    assert (results / "leaderboard.csv").is_file()
    assert sorted(gather_runs(results).seed) == [1, 2]


def test_a_file_system_without_locks_still_trains(tiny_config, monkeypatch) -> None:
    """Some network mounts refuse flock (ENOLCK): the run goes on without its lock."""
    import errno
    import fcntl

    def refuse(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    run = train(tiny_config("train.epochs=1"), progress=False)
    assert (run / "metrics.json").is_file()
