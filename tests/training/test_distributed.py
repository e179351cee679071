"""torchrun with 2 gloo/CPU processes against the single-process run.

Tolerances (docs/scaling-out.md): one DDP step with cross-rank BatchNorm gives the gradients
of the single-process step to floating-point reduction order (checked in float64: 1e-10
relative; measured 3e-14). Trained in float32, the rounding differences grow with the steps: the
2-epoch run below matches the single-process run's training loss to 2e-2 relative (measured
6e-3), its clean error to within one test image (measured: equal), NLL to 5e-2 relative
(measured 1.3e-2) and ECE to 0.5 points (measured 0.05); for scale, the single-process run with
2 CPU threads instead of 1 moves its loss by 1e-2. Evaluation sharded across ranks gives the
single-process metrics of the same checkpoint to 1e-6 (measured: equal), PGD attacked shard by
shard included (the same per-example outcomes).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from robench.distributed import shard_bounds
from robench.runs import load_checkpoint, read_records
from tests.conftest import run_in_process

pytestmark = pytest.mark.distributed
REPO = Path(__file__).resolve().parents[2]

CONFIG = """
name = "ddp"
results_dir = "{results}"
[data]
dataset = "npz:{npz}"
[model]
name = "wrn_16_2"
[augment]
method = "baseline"
options = {{path = "sample"}}  # per-sample draws keyed by image: the same data at any world size
[train]
epochs = 2
batch_size = 16
lr = 0.05
device = "cpu"
threads = 1
[evaluate]
metrics = ["clean", "calibration", "pgd", "corruption", "flip"]
batch_size = 64

[evaluate.options]
pgd = {{steps = 5}}
corruption = {{corruptions = ["gaussian_noise", "fog"], severities = [1, 5]}}
flip = {{perturbations = ["gaussian_noise", "rotate"], n_images = 8}}
"""

GRADIENT_CHECK = """
import copy, json, sys, torch, torch.nn.functional as F
from pathlib import Path
from robench.models import create_model
from robench import distributed as D
from robench.training.sync_batchnorm import sync_batch_norm

with D.session("cpu"):
    w = D.world()
    torch.manual_seed(0)
    model = create_model("wrn_16_2", 4).double()
    ref = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(30, 3, 32, 32, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (30,), generator=g)
    ddp = torch.nn.parallel.DistributedDataParallel(sync_batch_norm(model, x.device))
    lo, hi = D.shard_bounds(30, w.rank, w.size)
    (F.cross_entropy(ddp(x[lo:hi]), y[lo:hi]) * ((hi - lo) * w.size / 30)).backward()
    F.cross_entropy(ref(x), y).backward()
    grads = max(
        ((p.grad - q.grad).norm() / q.grad.norm()).item()
        for p, q in zip(model.parameters(), ref.parameters(), strict=True)
    )
    buffers = max(
        (a.double() - b.double()).abs().max().item()
        for a, b in zip(model.buffers(), ref.buffers(), strict=True)
    )
    report = {"rank": w.rank, "grads": grads, "buffers": buffers}
    (Path(sys.argv[1]) / f"rank{w.rank}.json").write_text(json.dumps(report))
"""

STOP_MID_EPOCH_2_ON_RANK_1 = """
import sys
from robench.config import load_config
from robench.pipeline import train
from robench import distributed
from robench.training.trainer import Trainer

due = Trainer._checkpoint_due


def stop_on_rank_1(self, step):  # a SIGTERM that reached rank 1 alone, at step 3 of epoch 2
    if distributed.world().rank == 1 and len(self.history) == 1 and step == 2:
        self._stop_requested = True
    return due(self, step)


Trainer._checkpoint_due = stop_on_rank_1
train(load_config(sys.argv[1], [f"results_dir={sys.argv[2]!r}"]), progress=False)
"""


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory) -> Iterator[None]:
    """The generated corrupted sets go to a temporary cache, never to ./results/cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _run(*args: str | Path, fails: bool = False) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(a) for a in args], env=env, capture_output=True, text=True, timeout=600
    )
    assert (done.returncode != 0) == fails, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


def _torchrun(nproc: int, *args: str | Path, fails: bool = False) -> str:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return _run(*launch, f"--nproc_per_node={nproc}", *args, fails=fails)


def _robench(*args: str | Path) -> list[str | Path]:
    return ["-m", "robench.cli", *args]


def _run_dir(results: Path) -> Path:
    (run,) = (results / "runs").iterdir()
    return run


def _metrics(results: Path) -> dict:
    return json.loads((_run_dir(results) / "metrics.json").read_text())


def _losses(results: Path) -> list[float]:
    with open(_run_dir(results) / "train_log.csv") as f:
        return [float(row["train_loss"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def work(tmp_path_factory, npz_maker) -> Path:
    """100 training images (the last batch of 4 splits 2 + 2), 50 test images, and the
    single-process run every test compares with."""
    root = tmp_path_factory.mktemp("ddp")
    npz = npz_maker(root / "tiny.npz", n_train=100, n_test=50)
    (root / "config.toml").write_text(CONFIG.format(results=root / "single", npz=npz))
    run_in_process("train", str(root / "config.toml"), "--quiet")
    return root


def _assert_close_to_single(results: Path, work: Path) -> None:
    one, two = _metrics(work / "single"), _metrics(results)
    assert _losses(results) == pytest.approx(_losses(work / "single"), rel=2e-2)
    n_test = one["data"]["test"]["count"]
    clean = abs(one["metrics"]["clean"]["clean_error"] - two["metrics"]["clean"]["clean_error"])
    assert clean <= 100 / n_test + 1e-9  # within one test image
    assert two["metrics"]["clean"]["clean_nll"] == pytest.approx(
        one["metrics"]["clean"]["clean_nll"], rel=5e-2
    )
    ece = abs(one["metrics"]["calibration"]["ece"] - two["metrics"]["calibration"]["ece"])
    assert ece <= 0.5


def test_shards_tile_in_rank_order() -> None:
    for n in (0, 1, 5, 16, 17):
        for size in (1, 2, 3, 4):
            bounds = [shard_bounds(n, r, size) for r in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            assert max(hi - lo for lo, hi in bounds) - min(hi - lo for lo, hi in bounds) <= 1


def test_ddp_step_has_the_single_process_gradients(tmp_path) -> None:
    """Sharded batch + cross-rank BatchNorm (CPU) + DDP = the full-batch step, in float64."""
    script = tmp_path / "check.py"
    script.write_text(GRADIENT_CHECK)
    _torchrun(2, script, tmp_path)  # one file per rank: their stdout lines can interleave
    reports = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]
    assert [r["rank"] for r in reports] == [0, 1]
    for r in reports:
        assert r["grads"] < 1e-10 and r["buffers"] < 1e-10, r


def test_two_processes_match_one(work, tmp_path, monkeypatch) -> None:
    """Trained and evaluated on 2 processes; the corrupted sets are generated afresh under
    torchrun (a cache of its own: one rank makes them, the other waits on the cache lock)."""
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    results = work / "two"
    out = _torchrun(
        2, *_robench("train", work / "config.toml", "--quiet"), "--results-dir", results
    )
    assert out.count("run folder:") == 1  # rank 0 alone reports
    run = _run_dir(results)
    assert run.name == _run_dir(work / "single").name  # the run id ignores the world size
    assert _metrics(results)["training"]["processes"] == 2
    assert not list(run.glob(".*.tmp"))
    _assert_close_to_single(results, work)
    # the sharded evaluation gives the single-process numbers of the same checkpoint
    copy = work / "two-eval" / "runs" / run.name
    shutil.copytree(run, copy)
    metrics = ["--metrics", "clean,calibration,pgd,corruption,flip"]
    run_in_process("evaluate", str(copy), *metrics, "--quiet")
    sharded, single = _metrics(results)["metrics"], _metrics(work / "two-eval")["metrics"]
    assert set(sharded) == {"clean", "calibration", "pgd", "corruption", "flip"}
    for metric, values in sharded.items():
        assert values == pytest.approx(single[metric], rel=1e-6, abs=1e-9), metric
    outcomes = [read_records(r)["pgd/adv_correct"] for r in (run, copy)]  # attacked in shards
    assert outcomes[0].shape == (50,) and (outcomes[0] == outcomes[1]).all()


def test_resume_with_another_world_size(work, tmp_path) -> None:
    """2 processes stop mid-epoch on a stop request that reached one rank only; 1 process
    resumes at the saved global step and finishes."""
    script = tmp_path / "stop.py"
    script.write_text(STOP_MID_EPOCH_2_ON_RANK_1)
    results = work / "resumed"
    out = _torchrun(2, script, work / "config.toml", results, fails=True)
    assert "interrupted at epoch 2, step 3" in out
    state = load_checkpoint(_run_dir(results) / "checkpoint.pt")
    assert state["epoch"] == 1 and state["partial"]["step"] == 3
    assert state["partial"]["seen"] == 3 * 16  # the sums of both ranks
    assert not (_run_dir(results) / "metrics.json").exists()
    run_in_process(
        "train", str(work / "config.toml"), "--resume", "--quiet", "--results-dir", str(results)
    )
    assert _metrics(results)["training"]["processes"] == 1
    _assert_close_to_single(results, work)


def test_batch_workers_under_torchrun_make_the_inline_batches(work, tmp_path) -> None:
    """Each rank's batch workers (spawned per rank) make that rank's inline batches: the same
    losses and weights as the 2-process run without workers, on the batched IPMix + JSD path."""
    batched = ["--set", 'augment.method="ipmix"', "--set", "augment.options={}", "--no-eval"]
    runs = {}
    for workers in (0, 1):
        results = tmp_path / f"workers{workers}"
        args = ["train", work / "config.toml", "--quiet", "--results-dir", results, *batched]
        _torchrun(2, *_robench(*args, "--set", f"train.batch_workers={workers}"))
        runs[workers] = results
    assert _losses(runs[0]) == _losses(runs[1])
    weights = [load_checkpoint(_run_dir(r) / "checkpoint.pt")["model"] for r in runs.values()]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
