"""Result tables: every run's metrics.json gathered into one pandas table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from robench.io import atomic_write
from robench.runs import list_runs, read_metrics

ID_COLUMNS = ["run_id", "method", "model", "dataset", "epochs", "seed"]


def run_row(doc: dict[str, Any]) -> dict[str, Any]:
    """One flat row: who the run is (method, model, data, recipe, seed) and every metric value."""
    cfg = doc["config"]
    row: dict[str, Any] = {
        "run_id": doc["run_id"],
        "method": cfg["augment"]["method"],
        "model": cfg["model"]["name"],
        "dataset": doc["data"]["test"]["name"],
        "epochs": cfg["train"]["epochs"],
        "seed": doc["seed"],
        "train_images": doc["data"]["train"]["count"],
        "test_images": doc["data"].get("eval", doc["data"]["test"])["count"],
        "parameters": doc["model"]["parameters"],
        "config_name": cfg["name"],
    }
    for values in doc.get("metrics", {}).values():
        row.update(values)
    return row


def gather_runs(results_dir: str | Path = "results") -> pd.DataFrame:
    """A table with one row per run under ``<results_dir>/runs``."""
    rows = [run_row(doc) for doc in map(read_metrics, list_runs(results_dir)) if doc]
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=ID_COLUMNS)
    return table.sort_values(["dataset", "model", "method", "seed"]).reset_index(drop=True)


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    with atomic_write(path) as f:
        table.to_csv(f, index=False, float_format="%.4f")
    return path


def report(results_dir: str | Path = "results") -> tuple[pd.DataFrame, Path]:
    """Gather every run and write ``<results_dir>/leaderboard.csv``; returns (table, path)."""
    table = gather_runs(results_dir)
    return table, write_csv(table, Path(results_dir) / "leaderboard.csv")
