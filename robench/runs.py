"""The results store: one folder per run under ``<results_dir>/runs/<run-id>/``.

A run folder holds ``config.toml`` (the resolved config), ``train_log.csv`` (one row per epoch),
``checkpoint.pt`` (written every epoch), ``metrics.json`` (schema below) and ``tables/*.csv`` and
``records.npz`` (per-example outputs of the metrics). Every file is written atomically.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import torch

from robench.config import Config, to_toml
from robench.errors import CheckpointError, RobenchError, first_line
from robench.io import atomic_write, hash_text, locked_file, write_json, write_text

SCHEMA_VERSION = 1
#: the kind (and config name) of a run of a model trained elsewhere: evaluated, not trained
EXTERNAL = "external"

# Keys that do not change what a run computes, so they stay out of the run id.
_NOT_IDENTITY = {
    ("results_dir",),
    ("train", "workers"),
    ("train", "threads"),
    ("train", "batch_workers"),
    ("train", "step"),
    ("train", "checkpoint_every_steps"),
    ("train", "checkpoint_minutes"),
    ("train", "dist_backend"),
    ("train", "dist_timeout_minutes"),
    ("evaluate",),
    ("log",),
    ("sweep",),
}
# Keys added after runs existed: left out of the run id while they hold their default, so
# adding a key never renames (and so never retrains) the runs of configs that do not use it.
_IDENTITY_ONLY_IF_SET = {
    ("data", "image_size"): 0,
    ("data", "crop_pct"): 0.875,
}


def run_id(cfg: Config) -> str:
    """``<name>_<method>_<model>-s<seed>-<hash>`` (other characters than letters, digits, ``_`` and
    ``.`` become ``_``): readable, and unique per training recipe."""
    ident = cfg.to_dict()
    for path in _NOT_IDENTITY:
        node = ident
        for part in path[:-1]:
            node = node[part]
        node.pop(path[-1], None)
    for (section, key), default in _IDENTITY_ONLY_IF_SET.items():
        if ident[section].get(key) == default:
            ident[section].pop(key, None)
    return run_name(cfg.name, cfg.augment.method, cfg.model.name, cfg.seed, ident)


def run_name(name: str, method: str, model: str, seed: int, ident: dict[str, Any]) -> str:
    """``<name>_<method>_<model>-s<seed>-<hash>``, the hash of ``ident`` (what the run is)."""
    digest = hash_text(json.dumps(ident, sort_keys=True))[:8]
    slug = re.sub(r"[^A-Za-z0-9_.]+", "_", f"{name}-{method}-{model}")
    return f"{slug}-s{seed}-{digest}"


def runs_root(results_dir: str | Path) -> Path:
    return Path(results_dir) / "runs"


_HELD: set[Path] = set()  # run folders this process has locked (the lock is re-entrant)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``<run_dir>/.lock`` so two processes never train or evaluate one run at once.

    An advisory ``flock``: released by the OS when the process dies, so a killed run never
    leaves a stale lock behind. On a file system that refuses ``flock`` (ENOLCK, EOPNOTSUPP:
    some network mounts) the run goes on unguarded.
    """
    run_dir = run_dir.resolve()
    if run_dir in _HELD:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)

    def refuse(handle: IO[str]) -> None:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        raise RobenchError(
            f"run {run_dir.name} is in use by {owner}; wait for it to finish, or use "
            "another results_dir or seed"
        )

    with locked_file(run_dir / ".lock", refuse) as handle:
        handle.seek(0)
        handle.truncate()
        handle.write(f"robench process {os.getpid()}")
        handle.flush()
        _HELD.add(run_dir)
        try:
            yield
        finally:
            _HELD.discard(run_dir)
            if [p.name for p in run_dir.iterdir()] == [".lock"]:
                shutil.rmtree(run_dir)  # a run that failed before writing anything leaves nothing


def clear_run(run_dir: Path) -> None:
    """Delete a run's files (for --force), keeping the lock file that guards it."""
    for path in run_dir.iterdir():
        if path.name == ".lock":
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def write_config(run_dir: Path, cfg: Config) -> None:
    write_text(run_dir / "config.toml", to_toml(cfg))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Serialise to memory first, then write atomically: a crash never leaves half a checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_write(path, "wb") as f:
        f.write(buffer.getbuffer())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: a checkpoint carrying a pickled object is refused."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found; train the run first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be loaded safely ({first_line(err)}); it is corrupt "
            "or carries non-tensor objects: retrain, or delete it and rerun with the same config"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not one robench wrote (no 'model' state dict in it); "
            "delete it and rerun with the same config (--force)"
        )
    return state


def write_metrics(run_dir: Path, doc: dict[str, Any]) -> None:
    write_json(run_dir / "metrics.json", {"schema_version": SCHEMA_VERSION, **doc})


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RobenchError(f"{path} is not valid JSON ({err}); delete it and re-evaluate") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        found = doc.get("schema_version") if isinstance(doc, dict) else type(doc).__name__
        raise RobenchError(f"{path} has schema version {found!r}, expected {SCHEMA_VERSION}")
    _check_doc(doc, path)
    return doc


#: values in percent that cannot leave [0, 100]: errors, flip probabilities, OOD measures, ECE
_PERCENT = re.compile(r"error|^mfp$|^fp_|^ood_(auroc|aupr|fpr95)_|^ece$")


def _check_doc(doc: dict[str, Any], path: Path) -> None:
    """A metrics.json edited by hand (or damaged) is refused by name, never half-read."""
    fix = "restore it or delete the run folder and rerun it"
    for key, kind in (("run_id", str), ("config", dict), ("data", dict), ("metrics", dict)):
        if not isinstance(doc.get(key), kind):
            raise RobenchError(f"{path}: {key!r} is missing or not a {kind.__name__}; {fix}")
    if not isinstance(doc["data"].get("test"), dict):
        raise RobenchError(f"{path}: 'data.test' is missing; {fix}")
    for metric, values in doc["metrics"].items():
        if not isinstance(values, dict):
            raise RobenchError(f"{path}: metrics.{metric} is not a table of values; {fix}")
        for name, value in values.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not math.isfinite(value):
                raise RobenchError(
                    f"{path}: {metric}.{name} = {value!r} is not a finite number; re-evaluate "
                    "the run (robench evaluate RUN_DIR) or delete it"
                )
            if _PERCENT.search(name) and not 0 <= value <= 100:
                raise RobenchError(
                    f"{path}: {metric}.{name} = {value!r} is a percentage outside [0, 100]; {fix}"
                )


def write_tables(run_dir: Path, metric: str, tables: dict[str, pd.DataFrame]) -> None:
    for name, table in tables.items():
        with atomic_write(run_dir / "tables" / f"{metric}_{name}.csv") as f:
            table.to_csv(f, index=False)


def read_table(run_dir: Path, metric: str, name: str) -> pd.DataFrame | None:
    """The table ``name`` that ``metric`` wrote for the run, or None when there is none."""
    path = run_dir / "tables" / f"{metric}_{name}.csv"
    return pd.read_csv(path) if path.is_file() else None


def write_records(run_dir: Path, records: dict[str, np.ndarray]) -> None:
    """Per-example outputs (predictions, confidences, ...) for bootstraps and paired tests."""
    with atomic_write(run_dir / "records.npz", "wb") as f:
        np.savez_compressed(f, **records)


def read_records(run_dir: Path) -> dict[str, np.ndarray]:
    path = run_dir / "records.npz"
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise RobenchError(
            f"{path} is damaged ({first_line(err)}); delete it and re-evaluate the run "
            "(robench evaluate RUN_DIR)"
        ) from None


def list_runs(results_dir: str | Path) -> list[Path]:
    root = runs_root(results_dir)
    return sorted(p for p in root.glob("*") if (p / "metrics.json").is_file())


#: what a run folder keeps in a results store: everything but the checkpoint and the lock
STORE_FILES = ("config.toml", "metrics.json", "train_log.csv", "records.npz")


def export_runs(
    results_dir: str | Path, store: str | Path, *, config: str | None = None
) -> list[Path]:
    """Copy the finished runs (of the config named ``config``, or all) into ``store`` without
    their checkpoints: a folder of results small enough for git that ``robench report`` and
    ``robench check --results-dir`` read like any results folder. Each run folder is filled
    beside its place and renamed into it, so a store never holds half a run."""
    exported = []
    for run_dir in list_runs(results_dir):
        doc = read_metrics(run_dir)
        if doc is None or (config is not None and doc["config"]["name"] != config):
            continue
        target = runs_root(store) / run_dir.name
        staging = target.with_name(f".{run_dir.name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in STORE_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, staging / name)
        if (run_dir / "tables").is_dir():
            shutil.copytree(run_dir / "tables", staging / "tables")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        exported.append(target)
    return exported
