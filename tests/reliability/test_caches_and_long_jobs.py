"""Damaged caches are rebuilt, never used; killed corruption generation and evaluation resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from robench.data.corrupted_sets import ensure_cifar_c
from robench.data.mixing import cached_fractals
from robench.runs import read_metrics
from tests.conftest import run_in_process

REPO = Path(__file__).resolve().parents[2]


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _stale_manifest(path: Path) -> None:
    manifest = path.parent / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["seed"] = 12345
    manifest.write_text(json.dumps(doc))


DAMAGES: dict[str, Callable[[Path], None]] = {
    "flipped byte": _flip_last_byte,
    "truncated file": _truncate,
    "manifest of other parameters": _stale_manifest,
}


@pytest.mark.fault(
    "corrupted-set cache damaged (flipped byte, truncated file, stale manifest)",
    "detected by size/sha256/key and regenerated; the rebuilt file equals the original",
)
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_corruption_cache_is_rebuilt(damage, tmp_path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    kwargs = {"corruptions": ["fog"], "workers": 1, "progress": False, "cache_root": tmp_path}
    folder = ensure_cifar_c(images, np.arange(6) % 3, **kwargs)
    good = (folder / "fog.npy").read_bytes()
    DAMAGES[damage](folder / "fog.npy")
    assert ensure_cifar_c(images, np.arange(6) % 3, **kwargs) == folder
    assert (folder / "fog.npy").read_bytes() == good


@pytest.mark.fault(
    "mixing-set cache damaged (flipped byte, truncated file, stale manifest)",
    "detected by sha256/manifest and regenerated; the pictures equal the original",
)
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_mixing_cache_is_rebuilt(damage, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path))
    good = cached_fractals(4, 32, seed=1)
    (path,) = tmp_path.glob("mixing/*/pictures.npy")
    DAMAGES[damage](path)
    np.testing.assert_array_equal(cached_fractals(4, 32, seed=1), good)


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"ended before the kill point: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "robench.cli", *args]


@pytest.mark.slow
@pytest.mark.fault(
    "corruption generation killed (SIGKILL) after its first finished file, then rerun",
    "finished files kept, the rest generated; the set equals an uninterrupted generation",
)
def test_killed_generation_continues(tmp_path, shared_data) -> None:
    args = ["corrupt", "--dataset", f"imagefolder:{shared_data}", "--n", "300", "--workers", "1"]
    args += ["--quiet", "--corruptions"]
    names = "gaussian_noise,glass_blur,motion_blur,snow,elastic_transform"
    out = tmp_path / "killed"
    progress = out / "cifar10-jpeg-C" / "progress.json"

    def one_file_done() -> bool:
        try:
            return len(json.loads(progress.read_text())["files"]) >= 1
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    proc = subprocess.Popen(
        _cli(*args, names, "--out", str(out)), cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    _kill_when(proc, one_file_done)
    kept = json.loads(progress.read_text())["files"]
    assert not (out / "cifar10-jpeg-C" / "manifest.json").exists()
    run_in_process(*args, names, "--out", str(out))
    run_in_process(*args, names, "--out", str(tmp_path / "straight"))
    resumed = json.loads((out / "cifar10-jpeg-C" / "manifest.json").read_text())["files"]
    straight = json.loads((tmp_path / "straight/cifar10-jpeg-C/manifest.json").read_text())
    assert resumed == straight["files"]
    for name, record in kept.items():
        assert resumed[name]["sha256"] == record["sha256"]


@pytest.mark.slow
@pytest.mark.fault(
    "evaluation killed (SIGKILL) after its first metric, then train --resume",
    "finished metrics kept, missing ones evaluated; metrics equal an uninterrupted run",
)
def test_killed_evaluation_resumes(tiny_npz, tmp_path, monkeypatch) -> None:
    metrics = '["clean","calibration","corruption","pgd"]'
    options = "{corruption={n_per_severity=8, corruptions=['fog','snow']}, pgd={steps=3}}"
    base = [
        "train", "--dataset", f"npz:{tiny_npz}", "--epochs", "1", "--quiet",
        "--set", 'model.name="wrn_16_2"', "--set", "train.batch_size=16",
        "--set", f"evaluate.metrics={metrics}", "--set", f"evaluate.options={options}",
        "--set", "train.threads=1",  # the killed process and the in-process steps compute alike
    ]  # fmt: skip
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    straight = tmp_path / "straight"
    run_in_process(*base, "--results-dir", str(straight))
    (run,) = (straight / "runs").iterdir()

    killed = tmp_path / "killed"
    run_dir = killed / "runs" / run.name

    def first_metric_saved() -> bool:
        doc = (run_dir / "metrics.json").exists() and read_metrics(run_dir)
        return bool(doc and doc["metrics"])

    proc = subprocess.Popen(
        _cli(*base, "--results-dir", str(killed)),
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    _kill_when(proc, first_metric_saved)
    assert set(read_metrics(run_dir)["metrics"]) < {"clean", "calibration", "corruption", "pgd"}
    run_in_process(*base, "--results-dir", str(killed), "--resume")
    assert read_metrics(run_dir)["metrics"] == read_metrics(run)["metrics"]


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.fault(
    "robench corrupt --workers 2 killed (SIGKILL) while its pool generates",
    "its worker processes end with it, within seconds",
)
def test_killed_generation_leaves_no_workers(tmp_path, npz_maker) -> None:
    data = npz_maker(tmp_path / "set.npz", n_train=4, n_test=600, classes=4)
    args = ["corrupt", "--dataset", f"npz:{data}", "--workers", "2", "--quiet"]
    proc = subprocess.Popen(
        _cli(*args, "--out", str(tmp_path / "out")), cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    workers: set[int] = set()
    progress = tmp_path / "out" / "npz:set-C" / "progress.json"

    def pool_working() -> bool:
        """The pool has started and its workers have finished a file (so each has run its
        initializer, which asks for the parent-death signal); more files are to come."""
        workers.update(_descendants(proc.pid))
        try:
            done = len(json.loads(progress.read_text())["files"]) >= 1
        except (FileNotFoundError, json.JSONDecodeError):
            done = False
        return done and len(workers) >= 3  # the fork server and its two workers

    _kill_when(proc, pool_working)
    deadline = time.monotonic() + 15
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "pool workers outlived robench"
