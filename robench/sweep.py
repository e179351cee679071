"""``robench sweep``: every (method, seed) run of one config, one ``robench train`` process each.

A run is handed to ``torchrun --standalone --nproc_per_node N`` when ``nproc > 1``; with
``parallel > 1`` several runs go at once, each on its own slot of ``nproc`` GPUs
(``CUDA_VISIBLE_DEVICES``), so runs never share a GPU. Finished runs are skipped without
starting a process, interrupted ones resume (``robench train --resume``), and a failed run does
not stop the others: the sweep ends with the list of failures (rerun the same command to retry
them; the finished ones are skipped).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from robench.augment import AUGMENTATIONS
from robench.config import load_config
from robench.errors import ConfigError, Interrupted, RobenchError
from robench.runs import read_metrics, run_id, runs_root


@dataclass
class Job:
    """One run of the sweep and, once started, its process."""

    method: str
    seed: int
    command: list[str]
    run: str  # the run id
    log: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    slot: int = 0
    started: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.method} seed {self.seed}"


def train_command(
    config: str | Path, method: str, seed: int, *, nproc: int = 1, extra: Sequence[str] = ()
) -> list[str]:
    """The ``robench train`` command line of one run, under torchrun when ``nproc > 1``."""
    train = ["-m", "robench.cli", "train", str(config), "--method", method, "--seed", str(seed)]
    train += ["--resume", *extra]
    if nproc == 1:
        return [sys.executable, *train]
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [sys.executable, *launch, *train]


def gpu_slots(gpus: list[str], nproc: int, parallel: int) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` of each parallel slot: disjoint sets of ``nproc`` GPUs, or
    ``None`` (inherit the environment) when no GPUs are named."""
    if not gpus:
        return [None] * parallel
    if len(set(gpus)) != len(gpus):
        raise ConfigError(f"--gpus names a GPU twice: {','.join(gpus)}")
    if nproc * parallel > len(gpus):
        raise ConfigError(
            f"--parallel {parallel} x --nproc-per-node {nproc} needs {nproc * parallel} GPUs but "
            f"--gpus names {len(gpus)}; lower --parallel or name more GPUs"
        )
    return [",".join(gpus[i * nproc : (i + 1) * nproc]) for i in range(parallel)]


def plan(
    config: str | Path,
    methods: list[str],
    seeds: list[int],
    *,
    nproc: int = 1,
    overrides: Sequence[str] = (),
    results_dir: str | None = None,
) -> tuple[list[Job], list[Job]]:
    """(runs to start, runs already finished): seeds outer, methods inner, as run_all.sh.

    Every config is loaded here, so a bad key or method fails before anything starts.
    """
    extra = [arg for text in overrides for arg in ("--set", text)]
    extra += ["--results-dir", results_dir] if results_dir else []
    todo, done = [], []
    for seed in seeds:
        for method in methods:
            keys = [*overrides, f"augment.method={method!r}", f"seed={seed}"]
            if results_dir:
                keys.append(f"results_dir={results_dir!r}")
            cfg = load_config(config, keys)
            AUGMENTATIONS.get(method)  # an unknown method: one error line with a suggestion
            command = train_command(config, method, seed, nproc=nproc, extra=extra)
            job = Job(method, seed, command, run_id(cfg))
            doc = read_metrics(runs_root(cfg.results_dir) / job.run)
            finished = doc is not None and all(m in doc["metrics"] for m in cfg.evaluate.metrics)
            (done if finished else todo).append(job)
    return todo, done


def shell_line(job: Job, gpus: str | None) -> str:
    env = f"CUDA_VISIBLE_DEVICES={gpus} " if gpus is not None else ""
    return env + shlex.join(job.command)


def run_sweep(
    todo: list[Job],
    *,
    slots: list[str | None],
    log_dir: Path,
    poll_seconds: float = 1.0,
) -> list[Job]:
    """Run the jobs, ``len(slots)`` at a time; returns the failed ones, in the jobs' order
    (not the order they ended in, which varies from one sweep to the next).

    With one slot the run's own output (progress bars) shows; with several each run writes
    ``log_dir/<method>-s<seed>.log`` and the sweep prints a line per start and end.
    """
    pending, running, failed = list(todo), [], []
    free = list(range(len(slots)))
    start = time.monotonic()
    try:
        while pending or running:
            while pending and free:
                job = pending.pop(0)
                job.slot = free.pop(0)
                _start(job, slots[job.slot], log_dir if len(slots) > 1 else None)
                running.append(job)
                where = f" on GPUs {slots[job.slot]}" if slots[job.slot] is not None else ""
                log = f", log {job.log}" if job.log else ""
                number = len(todo) - len(pending)
                print(f"=== [{number}/{len(todo)}] {job.name}{where}{log} ===", flush=True)
            time.sleep(poll_seconds)
            for job in [j for j in running if j.process.poll() is not None]:
                running.remove(job)
                free.append(job.slot)
                code = job.process.returncode
                if code:
                    failed.append(job)
                status = f"FAILED (exit {code})" if code else "done"
                print(
                    f"=== {job.name}: {status} in {(time.monotonic() - job.started) / 60:.1f} "
                    f"min; {len(running)} running, {len(pending)} waiting, "
                    f"{(time.monotonic() - start) / 60:.1f} min so far ===",
                    flush=True,
                )
    except KeyboardInterrupt:  # the runs got the SIGINT too: they checkpoint and stop
        for job in running:
            job.process.wait()
        raise Interrupted(
            "sweep interrupted; the runs saved their checkpoints: rerun the same command to "
            "resume them"
        ) from None
    return sorted(failed, key=todo.index)


def _start(job: Job, gpus: str | None, log_dir: Path | None) -> None:
    env = dict(os.environ)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    job.started = time.monotonic()
    if log_dir is None:
        job.process = subprocess.Popen(job.command, env=env)
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    job.log = log_dir / f"{job.method}-s{job.seed}.log"
    with open(job.log, "w") as out:  # the child keeps its own descriptor
        job.process = subprocess.Popen(job.command, env=env, stdout=out, stderr=subprocess.STDOUT)


def failure_error(failed: list[Job], total: int) -> RobenchError:
    return runs_failed([_failure(job) for job in failed], total)


def _failure(job: Job) -> str:
    log = f", log {job.log}" if job.log else ""
    return f"{job.name} (exit {job.process.returncode}{log})"


def runs_failed(failures: list[str], total: int) -> RobenchError:
    """The sweep's closing error, whichever executor ran it: each failed run with where to look."""
    return RobenchError(
        f"{len(failures)} of {total} runs failed: {'; '.join(failures)}; fix the cause and rerun "
        "the same sweep (finished runs are skipped, interrupted ones resume)"
    )
