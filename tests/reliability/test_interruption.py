"""Interrupted training continues exactly: SIGKILL at a mid-epoch checkpoint, SIGTERM, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robench.errors import Interrupted, RobenchError
from robench.pipeline import train
from robench.runs import load_checkpoint, read_metrics
from robench.training.trainer import Trainer
from tests.conftest import make_npz, run_in_process

REPO = Path(__file__).resolve().parents[2]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoint.pt")["model"]


def _assert_same(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ"
    assert read_metrics(a)["metrics"] == read_metrics(b)["metrics"]


@pytest.mark.fault(
    "training stopped mid-epoch by a stop request (as SIGINT/SIGTERM), then --resume",
    "checkpoint saved at the step; resumed weights and metrics equal an uninterrupted run",
)
def test_stop_mid_epoch_then_resume_equals_straight(tiny_config, tmp_path, monkeypatch) -> None:
    extra = ("model.options={drop_rate = 0.3}", "train.epochs=2")
    straight = train(tiny_config(*extra, f'results_dir="{tmp_path}/a"'), progress=False)

    cfg = tiny_config(*extra, f'results_dir="{tmp_path}/b"')
    real_due = Trainer._checkpoint_due

    def stop_at_step_1(self: Trainer, step: int) -> bool:
        self._stop_requested = self._stop_requested or step == 1  # as SIGTERM would
        return real_due(self, step)

    monkeypatch.setattr(Trainer, "_checkpoint_due", stop_at_step_1)
    with pytest.raises(Interrupted, match=r"epoch 1, step 2.*--resume"):
        train(cfg, progress=False)
    monkeypatch.undo()
    state = load_checkpoint(
        straight.parent.parent.parent / "b" / "runs" / straight.name / "checkpoint.pt"
    )
    assert (state["epoch"], state["partial"]["step"]) == (0, 2)
    resumed = train(cfg, resume=True, progress=False)
    _assert_same(straight, resumed)


@pytest.mark.fault(
    "training data swapped between an interruption and --resume",
    "one line naming both content hashes; the checkpoint is kept; nothing trained",
)
def test_resume_refuses_other_training_data(tiny_config, tiny_npz, tmp_path, monkeypatch) -> None:
    cfg = tiny_config("train.epochs=2")
    real_due = Trainer._checkpoint_due

    def stop_at_step_1(self: Trainer, step: int) -> bool:
        self._stop_requested = self._stop_requested or step == 1
        return real_due(self, step)

    monkeypatch.setattr(Trainer, "_checkpoint_due", stop_at_step_1)
    with pytest.raises(Interrupted):
        train(cfg, progress=False)
    monkeypatch.undo()
    run = next((tmp_path / "results" / "runs").iterdir())
    before = (run / "checkpoint.pt").read_bytes()
    make_npz(tiny_npz, seed=1)  # same shapes and classes, other images
    with pytest.raises(RobenchError, match=r"training data differ from the data .*content hash"):
        train(cfg, resume=True, progress=False)
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not (run / "metrics.json").exists()


def _args(npz: Path, results: Path, *extra: str) -> list[str]:
    """One thread everywhere: the killed process and the in-process steps compute alike."""
    return [
        "train",
        "--dataset", f"npz:{npz}", "--results-dir", str(results), "--epochs", "2", "--quiet",
        "--set", 'model.name="wrn_16_2"', "--set", "train.batch_size=8",
        "--set", 'train.device="cpu"', "--set", "model.options={drop_rate = 0.3}",
        "--set", 'evaluate.metrics=["clean"]', "--set", "train.checkpoint_every_steps=1",
        "--set", "train.threads=1", *extra,
    ]  # fmt: skip


def _cli(npz: Path, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "robench.cli", *_args(npz, results, *extra)]


def _run_until_checkpoints(args: list[str], checkpoint: Path, writes: int, sig: int) -> int:
    """Start training, wait until the checkpoint has been written ``writes`` times, signal it."""
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen, last = 0, None
    deadline = time.monotonic() + 120
    while seen < writes and proc.poll() is None and time.monotonic() < deadline:
        stamp = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
        if stamp is not None and stamp != last:
            seen, last = seen + 1, stamp
        time.sleep(0.01)
    assert proc.poll() is None, f"training ended before {writes} checkpoints: {proc.stderr.read()}"
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    return proc.returncode


@pytest.fixture(scope="module")
def straight_cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, run folder) of the uninterrupted CLI run the killed ones are compared with: made
    once for the three kill points."""
    base = tmp_path_factory.mktemp("straight")
    npz = make_npz(base / "tiny.npz")
    run_in_process(*_args(npz, base / "results"))
    (run,) = (base / "results" / "runs").iterdir()
    return npz, run


@pytest.mark.slow
@pytest.mark.fault(
    "training process killed (SIGKILL after 2 and 7 checkpoint writes, SIGTERM after 4), "
    "then --resume",
    "exit -9 / 130; the checkpoint loads; no metrics yet; resumed weights and metrics equal "
    "an uninterrupted run",
)
@pytest.mark.parametrize(
    ("sig", "writes"), [(signal.SIGKILL, 2), (signal.SIGKILL, 7), (signal.SIGTERM, 4)]
)
def test_killed_process_resumes_exactly(straight_cli_run, tmp_path, sig, writes) -> None:
    npz, run = straight_cli_run
    killed = tmp_path / "killed"
    checkpoint = killed / "runs" / run.name / "checkpoint.pt"
    code = _run_until_checkpoints(_cli(npz, killed), checkpoint, writes, sig)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    assert read_metrics(checkpoint.parent) is None  # no results from an unfinished run
    load_checkpoint(checkpoint)  # never half-written
    run_in_process(*_args(npz, killed, "--resume"))
    _assert_same(run, checkpoint.parent)
