"""``robench sweep --executor slurm|submitit-local``: SLURM jobs through submitit, tested without a
cluster: submitit's local executor runs tiny jobs (one of them interrupted by the time-limit
signal and requeued), and a fake ``sbatch``/``sacct`` checks the job script and ``--status``."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from robench.cli import main
from robench.cluster import process_group_env
from robench.config import load_config
from robench.pipeline import train
from robench.reporting.tables import recipe_key
from robench.runs import read_metrics, run_id

submitit = pytest.importorskip("submitit", reason="pip install -e '.[dev]' installs submitit")

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "baselines" / "quick.toml")


def tiny(npz: Path, epochs: int = 1) -> list[str]:
    keys = [
        'model.name="wrn_16_2"',
        f"train.epochs={epochs}",
        "train.batch_size=16",
        'train.device="cpu"',
        "train.threads=1",
        'evaluate.metrics=["clean"]',
        f'data.dataset="npz:{npz}"',
    ]
    return [arg for key in keys for arg in ("--set", key)]


@pytest.fixture
def train_here():
    """Train a sweep's runs in this process (the direct reference, without a process start
    each); torch's thread count is put back afterwards."""
    threads = torch.get_num_threads()

    def run(grid: list[str], results: Path) -> None:
        keys = grid[grid.index("--set") :][1::2]
        methods = grid[grid.index("--methods") + 1].split(",")
        seeds = grid[grid.index("--seeds") + 1].split(",") if "--seeds" in grid else ["0"]
        for seed in seeds:
            for method in methods:
                overrides = [*keys, f'augment.method="{method}"', f"seed={seed}"]
                overrides.append(f'results_dir="{results}"')
                train(load_config(QUICK, overrides), progress=False)

    yield run
    torch.set_num_threads(threads)


def metrics_of(results: Path) -> dict[str, dict]:
    """Every run's metric values, by run id (what must be bit-identical)."""
    out = {}
    for run_dir in sorted((results / "runs").iterdir()):
        doc = read_metrics(run_dir)
        assert doc is not None, run_dir
        out[run_dir.name] = doc["metrics"]
    return out


def test_process_group_from_slurm_environment() -> None:
    job = SimpleNamespace(
        num_tasks=8, num_nodes=2, global_rank=5, local_rank=1, job_id="4242_3",
        hostnames=["gpu07", "gpu08"],
    )  # fmt: skip
    env = process_group_env(job)
    assert {k: v for k, v in env.items() if k != "MASTER_PORT"} == {
        "MASTER_ADDR": "gpu07",
        "WORLD_SIZE": "8",
        "RANK": "5",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
    }
    assert 20000 <= int(env["MASTER_PORT"]) < 40000
    assert process_group_env(SimpleNamespace(**{**vars(job), "global_rank": 0})) == {
        **env,
        "RANK": "0",
    }  # every task of the job agrees on the master
    assert process_group_env(SimpleNamespace(num_tasks=1)) == {}


def test_a_job_process_loads_no_torch() -> None:
    """Each job's own process (submitit unpickling robench.cluster.RunJob) stays small: torch
    loads in the training process it starts, not twice per task."""
    code = "import sys, robench.cluster; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_where_a_run_is_scheduled_is_not_part_of_what_it_is() -> None:
    """[sweep.slurm] stays out of the run id and the recipe: the runs are found again whether
    they were trained on the cluster, locally or elsewhere (and old runs lack the section)."""
    plain = load_config(QUICK)
    cluster = load_config(QUICK, ['sweep.slurm.partition="gpu"', "sweep.slurm.gpus_per_node=8"])
    assert run_id(plain) == run_id(cluster)
    doc = {"config": cluster.to_dict(), "data": {"test": {"content_hash": "x"}}}
    old = {**doc, "config": {k: v for k, v in plain.to_dict().items() if k != "sweep"}}
    assert recipe_key(doc) == recipe_key(old)


@pytest.mark.slow
def test_a_local_executor_sweep_with_a_requeued_job_equals_the_direct_runs(
    tiny_npz: Path, tmp_path: Path, train_here, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 methods x 2 seeds through submitit's local executor, one job receiving SLURM's
    time-limit signal (USR2) while it trains: that run checkpoints at its next step, its job
    requeues itself and resumes, and every run ends with the metrics and per-epoch training log
    of the same run trained directly, bit for bit. Then --status says finished, and a rerun
    submits nothing."""
    grid = ["--methods", "baseline,cutmix", "--seeds", "0,1", *tiny(tiny_npz, epochs=4)]
    grid += ["--set", "train.checkpoint_every_steps=1"]
    train_here(grid, tmp_path / "direct")
    results = tmp_path / "jobs"
    jobs = ["--results-dir", str(results), "--executor", "submitit-local"]
    command = [sys.executable, "-m", "robench.cli", "sweep", QUICK, *grid, *jobs, "--wait"]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    sweeping = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    records = _wait_for(lambda: sorted((results / "sweep-jobs" / "runs").glob("*baseline*s0*")))
    job = json.loads(records[0].read_text())
    _wait_for(lambda: (results / "runs" / job["run_id"] / "checkpoint.pt").is_file())
    os.kill(_task_of(int(job["job_id"])), signal.SIGUSR2)  # it trains: signal it
    out, _ = sweeping.communicate(timeout=300)
    assert sweeping.returncode == 0 and "sweep: all 4 runs finished" in out, out
    logs = [
        Path(job["folder"], f"{job['job_id']}_0_log.{ext}").read_text() for ext in ("out", "err")
    ]
    log = "".join(logs)
    assert "interrupted at epoch" in log and "Requeued job" in log, log
    assert log.count("Starting with JobEnvironment") == 2  # the job ran twice
    assert metrics_of(results) == metrics_of(tmp_path / "direct")
    for run in (results / "runs").iterdir():
        assert _train_log(run) == _train_log(tmp_path / "direct" / "runs" / run.name)

    def sweep_here(*args: str) -> str:
        code = main(["sweep", QUICK, *grid, *jobs, *args])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    assert sweep_here("--status").splitlines()[-1] == "sweep: 4 finished"
    again = sweep_here()
    assert "4 finished (skipped), 0 to run" in again and "job" not in again


@pytest.mark.distributed
def test_a_two_task_job_trains_one_data_parallel_run(
    tiny_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A job of 2 tasks (2 GPUs per node on SLURM; 2 gloo CPU processes here): each task's
    process joins one process group through the rendezvous derived from the job's environment,
    and the run records both processes."""
    args = [
        "sweep",
        QUICK,
        "--methods",
        "baseline",
        *tiny(tiny_npz),
        "--executor",
        "submitit-local",
    ]
    args += ["--results-dir", str(tmp_path), "--nproc-per-node", "2", "--wait"]
    assert main(args) == 0, capsys.readouterr().err
    (run,) = (tmp_path / "runs").iterdir()
    assert read_metrics(run)["training"]["processes"] == 2


def _task_of(controller: int) -> int:
    """The job's task process: the child of submitit's local controller."""
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _train_log(run_dir: Path) -> list[list[str]]:
    """The per-epoch figures of train_log.csv, without the timings."""
    with (run_dir / "train_log.csv").open() as f:
        return [
            [row[c] for c in ("epoch", "lr", "train_loss", "train_error")]
            for row in csv.DictReader(f)
        ]


def _wait_for(check, seconds: float = 120.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


FAKE_SBATCH = """#!/bin/sh
cp "$1" "$FAKE_SLURM/job.sh"
echo "Submitted batch job 4242"
"""


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``sbatch`` that keeps the job script, ``sacct`` that answers from a file, ``srun``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": FAKE_SBATCH,
        "sacct": '#!/bin/sh\ncat "$FAKE_SLURM/sacct.txt"\n',
        "srun": "#!/bin/sh\nexit 0\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(tmp_path))
    (tmp_path / "sacct.txt").write_text("JobID|State|NodeList\n")
    return tmp_path


def test_slurm_jobs_carry_the_settings_and_report_their_states(
    fake_slurm: Path, tiny_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = fake_slurm / "results"
    grid = [QUICK, "--methods", "baseline,cutmix", "--seeds", "0", *tiny(tiny_npz)]
    grid += ["--results-dir", str(results), "--executor", "slurm"]

    def sweep_here(*args: str) -> list[str]:
        assert main(["sweep", *grid, *args]) == 0
        return capsys.readouterr().out.splitlines()

    flags = ["--partition", "gpu", "--nodes", "2", "--gpus-per-node", "4", "--time", "600"]
    flags += ["--sbatch", "exclude=node12", "--set", 'sweep.slurm.setup=["module load cuda"]']
    out = sweep_here(*flags)
    assert any(line.startswith("=== baseline seed 0: job 4242_0, log") for line in out), out
    script = (fake_slurm / "job.sh").read_text()
    for line in [
        "#SBATCH --partition=gpu",
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --ntasks-per-node=4",  # one training process per GPU
        "#SBATCH --time=600",
        "#SBATCH --signal=USR2@120",  # checkpoint 2 minutes before the limit
        "#SBATCH --requeue",
        "#SBATCH --exclude=node12",
        "#SBATCH --array=0-1%2",  # one job array, a task per run
        "module load cuda",
    ]:
        assert line in script.splitlines(), line
    unknown = sweep_here()  # sacct does not list the jobs yet: not submitted twice either
    assert all("its job is unknown" in x and "to submit it anyway" in x for x in unknown[1:]), (
        unknown
    )
    sacct = fake_slurm / "sacct.txt"
    sacct.write_text("JobID|State|NodeList\n4242_0|RUNNING|gpu07\n4242_1|PENDING|\n")
    lines = sweep_here("--status")
    assert lines[0].split()[:4] == ["baseline", "seed", "0", "running"], lines
    assert lines[1].split()[:4] == ["cutmix", "seed", "0", "queued"], lines
    assert lines[-1] == "sweep: 1 running, 1 queued"
    again = sweep_here()  # nothing is submitted twice
    assert sum("not submitted again, its job is" in x for x in again) == 2
    assert not any(": job" in x for x in again)
    sacct.write_text("JobID|State|NodeList\n4242_0|TIMEOUT|gpu07\n4242_1|CANCELLED by 7|\n")
    baseline_run = sorted(p.stem for p in (results / "sweep-jobs" / "runs").glob("*.json"))[0]
    (results / "runs" / baseline_run).mkdir(parents=True)
    (results / "runs" / baseline_run / "checkpoint.pt").write_bytes(b"")
    lines = sweep_here("--status")
    assert "failed (TIMEOUT)" in lines[0] and "4242_0_0_log.out" in lines[0]
    assert lines[0].endswith("its checkpoint is kept: resubmit to resume"), lines
    assert "failed (CANCELLED)" in lines[1] and "resubmit" not in lines[1]


def test_slurm_executor_says_where_slurm_is_missing(tmp_path: Path, capsys) -> None:
    path = os.environ["PATH"]
    os.environ["PATH"] = str(tmp_path)  # no sbatch, no srun
    try:
        code = main(["sweep", QUICK, "--results-dir", str(tmp_path), "--executor", "slurm"])
    finally:
        os.environ["PATH"] = path
    err = capsys.readouterr().err
    assert code == 2
    assert "no SLURM here (sbatch/srun not found)" in err and "submitit-local" in err
    assert len(err.strip().splitlines()) == 1


def test_a_malformed_sbatch_option_is_one_line(capsys) -> None:
    args = ["sweep", QUICK, "--executor", "slurm", "--sbatch", "novalue", "--dry-run"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "robench: error: --sbatch takes KEY=VALUE, e.g. --sbatch exclude=node12; got 'novalue'"
    )
