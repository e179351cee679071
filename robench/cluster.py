"""Sweeps on a cluster: a SLURM job per run, through submitit (``robench sweep --executor slurm``).

A job runs the run's ``robench train --resume`` command, the same as a local sweep's, as a child
process: one task per GPU, each with the ``torch.distributed`` rendezvous derived from SLURM's
environment (:func:`process_group_env`), so a multi-GPU or multi-node run is the DDP run that
torchrun would start. SLURM signals a job ``signal_seconds`` before its time limit (and a
preempted job where the cluster sends the same signal); submitit then calls
:meth:`RunJob.checkpoint`, which has the child save a checkpoint at its next step and stop,
and requeues the job, which resumes from that checkpoint. The trainer resumes bit for bit
(``robench.training.trainer``), so a requeued run ends with the numbers of an uninterrupted one.

Every submission is recorded in ``<results>/sweep-jobs/runs/<run id>.json`` (executor, job id,
log folder), which :func:`run_states` reads for ``robench sweep --status``. ``submitit-local``
runs the same jobs on this machine through submitit's local executor (how the tests exercise
the path without a cluster).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from robench.config import SlurmConfig
from robench.errors import ConfigError, RobenchError
from robench.io import write_json

try:
    import submitit
except ImportError:  # the extra is not installed: make_executor says how to get it
    submitit = None

JOBS_DIR = "sweep-jobs"
#: SLURM job states (sacct) by what they mean for a run whose metrics are not complete
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED"}
RUNNING = {"RUNNING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT"}


class RunJob:
    """One run as a submitit job: its ``robench train --resume`` command in a child process.
    Checkpointable in submitit's sense: it has a :meth:`checkpoint` method."""

    def __init__(self, command: Sequence[str], name: str) -> None:
        self.command = list(command)
        self.name = name
        self._child: subprocess.Popen | None = None

    def __call__(self) -> str:
        env = dict(os.environ) | process_group_env(submitit.JobEnvironment())
        env["PYTHONUNBUFFERED"] = "1"  # the job's log shows each line as it is printed
        self._child = subprocess.Popen(self.command, env=env)
        try:
            while (code := self._child.poll()) is None:
                time.sleep(0.5)
        except BaseException:  # cancelled (submitit's SIGINT), or requeued: never leave it behind
            if self._child.returncode is None:
                self._child.send_signal(signal.SIGTERM)  # it checkpoints at its next step
            raise
        if code:
            raise RobenchError(f"{self.name}: robench train exited with status {code} (log above)")
        return self.name

    def checkpoint(self) -> Any:
        """Called by submitit on the time-limit or preemption signal: the training saves a
        checkpoint at its next step and stops (SIGTERM), then the job is requeued with the same
        command, which resumes it."""
        child = self._child
        if child is not None and child.returncode is None:
            child.send_signal(signal.SIGTERM)
            # not Popen.wait: the poll() this signal interrupted may hold its lock; that poll()
            # may also have reaped the child already
            with contextlib.suppress(ChildProcessError):
                _, status = os.waitpid(child.pid, 0)
                child.returncode = os.waitstatus_to_exitcode(status)
        return submitit.helpers.DelayedSubmission(RunJob(self.command, self.name))

    def __getstate__(self) -> dict[str, Any]:
        return {"command": self.command, "name": self.name, "_child": None}


def process_group_env(job: Any) -> dict[str, str]:
    """The ``env://`` rendezvous of ``torch.distributed`` for this task of a multi-task job
    (``job``: a ``submitit.JobEnvironment``): rank and world from SLURM's task ids, the first
    node as the master, a port derived from the job id. Nothing for a one-task job."""
    if job.num_tasks <= 1:
        return {}
    port = 20000 + zlib.crc32(str(job.job_id).encode()) % 20000
    return {
        "MASTER_ADDR": job.hostnames[0],
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(job.num_tasks),
        "RANK": str(job.global_rank),
        "LOCAL_RANK": str(job.local_rank),
        "LOCAL_WORLD_SIZE": str(job.num_tasks // max(job.num_nodes, 1)),
    }


def make_executor(kind: str, folder: Path, slurm: SlurmConfig, nproc: int = 1) -> Any:
    """A submitit executor for ``kind`` (``slurm`` or ``submitit-local``) with the run's
    resources; ``nproc``: processes per node for ``submitit-local`` (SLURM's come from
    ``gpus_per_node``)."""
    if submitit is None:
        raise ConfigError(
            f"--executor {kind} needs submitit: pip install 'robench[slurm]' (or submitit)"
        )
    if kind == "submitit-local":
        executor = submitit.LocalExecutor(folder, max_num_timeout=slurm.max_timeouts)
        executor.update_parameters(
            timeout_min=slurm.time_minutes,
            tasks_per_node=nproc,
            signal_delay_s=slurm.signal_seconds,
        )
        return executor
    if shutil.which("srun") is None or shutil.which("sbatch") is None:
        raise ConfigError(
            "--executor slurm: no SLURM here (sbatch/srun not found); submit from the "
            "cluster's login node, or try the jobs on this machine with --executor submitit-local"
        )
    executor = submitit.SlurmExecutor(folder, max_num_timeout=slurm.max_timeouts)
    executor.update_parameters(**sbatch_parameters(slurm))
    return executor


def sbatch_parameters(slurm: SlurmConfig) -> dict[str, Any]:
    """``[sweep.slurm]`` as submitit's SlurmExecutor parameters (its sbatch options)."""
    tasks = max(slurm.gpus_per_node, 1)  # one process per GPU
    params: dict[str, Any] = {
        "job_name": "robench",
        "time": slurm.time_minutes,
        "nodes": slurm.nodes,
        "ntasks_per_node": tasks,
        "cpus_per_task": slurm.cpus_per_task,
        "signal_delay_s": slurm.signal_seconds,
        "setup": list(slurm.setup),
        "additional_parameters": {"requeue": True, **slurm.sbatch},
    }
    if slurm.gpus_per_node:
        params["gpus_per_node"] = slurm.gpus_per_node
    if slurm.mem_gb:
        params["mem"] = f"{slurm.mem_gb:g}GB"
    if slurm.array_parallelism:
        params["array_parallelism"] = slurm.array_parallelism
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(slurm, key):
            params[key] = getattr(slurm, key)
    return params


@dataclass(frozen=True)
class Submitted:
    """A run handed to an executor, as recorded next to the results."""

    run_id: str
    name: str
    executor: str
    job_id: str
    folder: str
    submitted: str

    @property
    def log(self) -> Path:
        return Path(self.folder) / f"{self.job_id}_0_log.out"


def submit(
    executor: Any, kind: str, runs: Sequence[tuple[str, str, list[str]]], results_dir: Path
) -> list[Submitted]:
    """Submit each ``(run id, name, command)`` as one job (a job array on SLURM) and record it."""
    with executor.batch():
        jobs = [executor.submit(RunJob(command, name)) for _, name, command in runs]
    now = datetime.now(UTC).isoformat(timespec="seconds")
    out = []
    for (run, name, _), job in zip(runs, jobs, strict=True):
        record = Submitted(run, name, kind, str(job.job_id), str(job.paths.folder), now)
        write_json(_record_path(results_dir, run), vars(record))
        out.append(record)
    return out


def _record_path(results_dir: Path, run: str) -> Path:
    return results_dir / JOBS_DIR / "runs" / f"{run}.json"


def read_submitted(results_dir: Path, run: str) -> Submitted | None:
    path = _record_path(results_dir, run)
    if not path.is_file():
        return None
    try:
        return Submitted(**json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise RobenchError(
            f"{path} is damaged ({err}); delete it (the run's results are not affected)"
        ) from None


def job_states(records: Sequence[Submitted]) -> dict[str, str]:
    """Job id -> ``queued``, ``running``, ``ended``, ``unknown`` or ``failed (<state>)``: what
    the executor says of each job (one sacct call for all SLURM jobs); whether the run
    finished is the results' to say."""
    slurm = [r for r in records if r.executor == "slurm"]
    if slurm:
        watcher = submitit.SlurmJob.watcher
        for record in slurm:
            watcher.register_job(record.job_id)
        watcher.update()
    return {r.job_id: _job_state(r) for r in records}


def _job_state(record: Submitted) -> str:
    if record.executor == "submitit-local":
        if (Path(record.folder) / f"{record.job_id}_0_result.pkl").is_file():
            return "ended"
        try:
            os.kill(int(record.job_id), 0)
        except (ProcessLookupError, ValueError):
            return "failed (no process)"
        except PermissionError:
            pass
        return "running"
    state = submitit.SlurmJob.watcher.get_state(record.job_id, mode="cache").split()[0].upper()
    if state in QUEUED or state == "PREEMPTED":  # preempted: requeued by SLURM or by the job
        return "queued"
    if state in RUNNING:
        return "running"
    if state == "UNKNOWN":  # not in sacct (yet), or sacct failed
        return "unknown"
    return "ended" if state == "COMPLETED" else f"failed ({state})"


def run_states(
    results_dir: Path, runs: Sequence[str], metrics: Sequence[str]
) -> list[tuple[str, str]]:
    """(state, where to look) of each run: ``finished``; ``queued``, ``running`` or
    ``unknown`` with its job; ``failed (...)`` with the job's log; ``interrupted`` (a checkpoint
    to resume); ``not submitted``."""
    from robench.runs import read_metrics, runs_root  # torch: not for the job's own process

    records = {run: read_submitted(results_dir, run) for run in runs}
    states = job_states([r for r in records.values() if r is not None])
    out = []
    for run in runs:
        run_dir = runs_root(results_dir) / run
        doc = read_metrics(run_dir)
        record = records[run]
        if doc is not None and all(m in doc["metrics"] for m in metrics):
            out.append(("finished", str(run_dir)))
        elif record is not None:
            state = states[record.job_id]
            if state == "ended":  # the job ended without the run's metrics
                state = "failed (ended without metrics)"
            where = f"job {record.job_id}, log {record.log}"
            if state not in ACTIVE and (run_dir / "checkpoint.pt").is_file():
                where += "; its checkpoint is kept: resubmit to resume"
            out.append((state, where))
        elif (run_dir / "checkpoint.pt").is_file():
            out.append(("interrupted", f"checkpoint in {run_dir}: resubmit to resume"))
        else:
            out.append(("not submitted", ""))
    return out


#: the states of a job that has not ended
ACTIVE = ("queued", "running", "unknown")


def submit_sweep(
    kind: str,
    jobs: Sequence[Any],
    results_dir: Path,
    slurm: SlurmConfig,
    nproc: int = 1,
    dry_run: bool = False,
) -> list[Submitted]:
    """Submit the sweep's unfinished runs (:class:`robench.sweep.Job`), one job each, skipping
    those whose job is still queued or running; ``dry_run`` prints what would be submitted."""
    pending = []
    for job, (state, where) in zip(
        jobs, run_states(results_dir, [j.run for j in jobs], ()), strict=True
    ):
        if state in ACTIVE:  # never one run in two jobs at once
            hint = ""
            if state == "unknown":  # sacct does not know it (yet): say how to force it
                hint = f"; delete {_record_path(results_dir, job.run)} to submit it anyway"
            print(f"=== {job.name}: not submitted again, its job is {state} ({where}){hint} ===")
        else:
            pending.append(job)
    if dry_run:
        if kind == "slurm":
            options = sbatch_parameters(slurm)
            print("sbatch options: " + ", ".join(f"{k}={v!r}" for k, v in options.items()))
        for job in pending:
            print(shlex.join(job.command))
        return []
    if not pending:
        return []
    executor = make_executor(kind, results_dir / JOBS_DIR, slurm, nproc)
    records = submit(executor, kind, [(j.run, j.name, j.command) for j in pending], results_dir)
    for record in records:
        print(f"=== {record.name}: job {record.job_id}, log {record.log} ===", flush=True)
    return records


def wait_for_jobs(
    records: Sequence[Submitted], results_dir: Path, metrics: Sequence[str], total: int
) -> None:
    """Follow the submitted jobs to their end (a line each); raise naming the failed runs."""
    waiting, failed = list(records), []
    local = all(r.executor == "submitit-local" for r in records)
    while waiting:
        time.sleep(1.0 if local else 30.0)
        states = run_states(results_dir, [r.run_id for r in waiting], metrics)
        for record, (state, _) in zip(list(waiting), states, strict=True):
            if state in ACTIVE:
                continue
            waiting.remove(record)
            if state != "finished":
                failed.append(f"{record.name} ({state}, log {record.log})")
            print(f"=== {record.name}: {state}; {len(waiting)} jobs left ===", flush=True)
    if failed:
        from robench.sweep import runs_failed  # torch: not for the job's own process

        raise runs_failed(failed, total)
    print(f"sweep: all {total} runs finished")


def status_lines(jobs: Sequence[Any], results_dir: Path, metrics: Sequence[str]) -> list[str]:
    """``robench sweep --status``: a line per run (name, state, job and log), then the counts."""
    states = run_states(results_dir, [job.run for job in jobs], metrics)
    rows = [(job.name, state, where) for job, (state, where) in zip(jobs, states, strict=True)]
    name_width = max(len(name) for name, _, _ in rows)
    state_width = max(len(state) for _, state, _ in rows)
    lines = [f"{n:<{name_width}}  {s:<{state_width}}  {w}".rstrip() for n, s, w in rows]
    counts = Counter(state.split(" (")[0] for _, state, _ in rows)
    return [*lines, "sweep: " + ", ".join(f"{n} {state}" for state, n in counts.items())]
