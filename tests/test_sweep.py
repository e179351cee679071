"""``robench sweep``: command lines, GPU slots, skipping finished runs, the list of failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from robench.cli import main
from robench.errors import ConfigError
from robench.sweep import gpu_slots

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "baselines" / "quick.toml")
TINY = [
    "--set",
    'model.name="wrn_16_2"',
    "--set",
    "train.epochs=1",
    "--set",
    "train.batch_size=16",
    "--set",
    'train.device="cpu"',
    "--set",
    "train.threads=1",
    "--set",
    'evaluate.metrics=["clean"]',
]


def _sweep(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["sweep", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_hands_runs_to_torchrun_on_disjoint_gpus(tmp_path, capsys) -> None:
    code, out, _ = _sweep(
        capsys,
        QUICK,
        "--methods",
        "baseline,cutmix",
        "--seeds",
        "0 1",
        "--nproc-per-node",
        "2",
        "--parallel",
        "2",
        "--gpus",
        "0,1,2,3",
        "--results-dir",
        str(tmp_path),
        "--dry-run",
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "sweep: 4 runs, 0 finished (skipped), 4 to run"
    commands = lines[1:]
    slots = ["CUDA_VISIBLE_DEVICES=0,1", "CUDA_VISIBLE_DEVICES=2,3"]
    assert [c.split()[0] for c in commands] == slots * 2
    torchrun = "-m torch.distributed.run --standalone --nproc_per_node=2 -m robench.cli train"
    assert all(torchrun in c for c in commands)
    order = [
        (c.split("--method ")[1].split()[0], c.split("--seed ")[1].split()[0]) for c in commands
    ]
    assert order == [("baseline", "0"), ("cutmix", "0"), ("baseline", "1"), ("cutmix", "1")]
    assert all("--resume" in c and f"--results-dir {tmp_path}" in c for c in commands)


def test_run_all_hands_its_runs_to_sweep(tmp_path) -> None:
    args = ["--methods", "baseline ipmix", "--seeds", "0 1", "--nproc-per-node", "2"]
    args += ["--parallel", "2", "--gpus", "0,1,2,3", "--results-dir", str(tmp_path), "--dry-run"]
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        ["bash", str(REPO / "run_all.sh"), *args], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    commands = done.stdout.splitlines()[1:]
    assert len(commands) == 4 and commands[1].startswith("CUDA_VISIBLE_DEVICES=2,3 ")
    assert "quick_suite.toml --method ipmix --seed 0 --resume --results-dir" in commands[1]


def test_one_process_per_run_without_torchrun(tmp_path, capsys) -> None:
    code, out, _ = _sweep(capsys, QUICK, "--results-dir", str(tmp_path), "--dry-run")
    assert code == 0
    (command,) = out.splitlines()[1:]
    assert "torch.distributed.run" not in command and "CUDA_VISIBLE_DEVICES" not in command
    assert "--method baseline --seed 0" in command  # the config's own method and seed


def test_gpu_slots_are_disjoint_and_checked() -> None:
    assert gpu_slots(["0", "1", "2", "3"], 1, 3) == ["0", "1", "2"]
    assert gpu_slots([], 2, 2) == [None, None]
    with pytest.raises(ConfigError, match="needs 4 GPUs but --gpus names 3"):
        gpu_slots(["0", "1", "2"], 2, 2)
    with pytest.raises(ConfigError, match="names a GPU twice"):
        gpu_slots(["0", "0"], 1, 2)


def test_unknown_method_fails_before_anything_runs(tmp_path, capsys) -> None:
    code, out, err = _sweep(capsys, QUICK, "--methods", "ipmx", "--dry-run")
    assert code == 2
    assert "did you mean 'ipmix'" in err and "sweep:" not in out


@pytest.mark.slow
def test_runs_skips_finished_and_lists_failures(tiny_npz, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    common = ["--results-dir", str(tmp_path), *TINY, "--set", f'data.dataset="npz:{tiny_npz}"']
    code, out, _ = _sweep(capsys, QUICK, "--methods", "baseline", *common)
    assert code == 0, out
    assert "sweep: all 1 runs finished" in out
    # again: finished, so skipped without starting a process
    code, out, _ = _sweep(capsys, QUICK, "--methods", "baseline", *common)
    assert code == 0 and "1 finished (skipped), 0 to run" in out
    # two runs that fail at once (in parallel): both named, with their logs, exit status 2
    broken = [*common, "--set", f'data.dataset="npz:{tmp_path}/missing.npz"', "--parallel", "2"]
    code, out, err = _sweep(capsys, QUICK, "--methods", "baseline,cutmix", *broken)
    assert code == 2
    assert "2 of 2 runs failed: baseline seed 0 (exit 2, log" in err and "cutmix seed 0" in err
    assert (tmp_path / "sweep-logs" / "cutmix-s0.log").read_text().count("robench: error:") == 1
