"""Experiment trackers: a run's config, its step loss and learning rate, per-epoch figures and
final metrics sent to TensorBoard, MLflow or Weights & Biases (``[log] tracker = ...``).

Each tracker is an optional extra (``pip install "robench[trackers]"``) imported only when a
run asks for it. Where it writes:

* ``tensorboard``: event files in ``<run>/tensorboard/`` (``tensorboard --logdir results/runs``);
* ``mlflow``: the tracking server or store that ``MLFLOW_TRACKING_URI`` names, else a local file
  store ``<results>/mlruns`` (MLflow 3 keeps file stores behind ``MLFLOW_ALLOW_FILE_STORE``,
  which robench sets for it; ``mlflow ui --backend-store-uri results/mlruns``); experiment
  ``log.project``, run name the run id, resumed runs continue the same MLflow run;
* ``wandb``: project ``log.project``, run id and name from the robench run id (a resumed run
  continues it), files under ``<run>/wandb/``; ``WANDB_MODE=offline`` logs without a network
  (``wandb sync`` uploads later).

Only the main process of a torchrun job logs.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from robench.errors import ConfigError
from robench.io import hash_text

#: the trackers; each but "none" is the name of the package it needs
TRACKERS = ("none", "tensorboard", "mlflow", "wandb")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}`` (lists and None as text)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, f"{name}.")
        else:
            out[name] = value if isinstance(value, bool | int | float | str) else str(value)
    return out


class Tracker:
    """Logs nothing: the tracker of ``tracker = "none"`` and the interface of the others.

    ``active`` is False only here, so the trainer skips the step values (and their device
    sync) when nothing records them."""

    active = False
    last_step = 0  # the step of the last ``log``, where the final metrics go

    def log_config(self, config: dict[str, Any]) -> None:
        """The run's whole config (nested sections flattened to ``section.key``)."""

    def log(self, values: dict[str, float], step: int) -> None:
        """Numbers at a global training step (``train/loss``, ``epoch/train_error``, ...);
        an implementation sets ``last_step``."""

    def log_final(self, values: dict[str, float]) -> None:
        """The evaluated metrics (``<metric>/<value>``), once at the end, at the last step."""
        self.log(values, self.last_step)

    def close(self) -> None:
        """Flush and finish."""


class TensorBoardTracker(Tracker):
    active = True

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log_config(self, config: dict[str, Any]) -> None:
        text = "\n".join(f"    {k} = {v!r}" for k, v in sorted(flatten(config).items()))
        self.writer.add_text("config", text)

    def log(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.last_step = step

    def close(self) -> None:
        self.writer.close()


class MLflowTracker(Tracker):
    active = True

    def __init__(self, run_dir: Path, results_dir: Path, project: str) -> None:
        import mlflow

        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):  # MLflow 3 keeps file stores behind a flag
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((results_dir / "mlruns").resolve().as_uri())
        mlflow.set_experiment(project)
        found = mlflow.search_runs(
            filter_string=f"tags.robench_run_id = '{run_dir.name}'", output_format="list"
        )
        run_id = found[0].info.run_id if found else None
        self.run = mlflow.start_run(run_id=run_id, run_name=run_dir.name)
        mlflow.set_tag("robench_run_id", run_dir.name)

    def log_config(self, config: dict[str, Any]) -> None:
        params = {k: str(v)[:500] for k, v in flatten(config).items()}  # MLflow's value limit
        existing = self.mlflow.get_run(self.run.info.run_id).data.params
        self.mlflow.log_params({k: v for k, v in params.items() if k not in existing})

    def log(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics({_mlflow_name(k): v for k, v in values.items()}, step=step)
        self.last_step = step

    def close(self) -> None:
        self.mlflow.end_run()


def _mlflow_name(name: str) -> str:
    """MLflow metric names allow letters, digits, ``_ - . / space``: the rest become ``_``."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)


class WandbTracker(Tracker):
    active = True

    def __init__(self, run_dir: Path, project: str) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=project,
            name=run_dir.name,
            id=hash_text(run_dir.name)[:16],  # W&B ids: no slashes; the same run on resume
            resume="allow",
            dir=str(run_dir),
            reinit="finish_previous",
        )

    def log_config(self, config: dict[str, Any]) -> None:
        self.run.config.update(config, allow_val_change=True)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def log_final(self, values: dict[str, float]) -> None:
        self.run.summary.update(values)

    def close(self) -> None:
        self.run.finish()


def open_tracker(kind: str, run_dir: Path, results_dir: Path, project: str) -> Tracker:
    """The tracker ``kind`` for a run; a missing package is one clear error."""
    if kind not in TRACKERS:
        raise ConfigError(f"log.tracker must be one of {', '.join(TRACKERS)}, got {kind!r}")
    if kind == "none":
        return Tracker()
    try:
        importlib.import_module(kind)
    except ImportError:
        raise ConfigError(
            f"log.tracker = {kind!r} needs the {kind} package: pip install "
            f'"robench[trackers]" (or pip install {kind}), or set log.tracker = "none"'
        ) from None
    run_dir.mkdir(parents=True, exist_ok=True)
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir)
    if kind == "mlflow":
        return MLflowTracker(run_dir, results_dir, project)
    return WandbTracker(run_dir, project)
