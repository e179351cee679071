"""Published numbers (``baselines/published.csv``) next to ours.

A published cell is comparable with a leaderboard row only when method, model, data set and
epochs are the same and the published method options (e.g. ``{jsd = true}``) are among the run's
resolved augmentation options. Everything else is at best a "closest published" number: same
method and metric, same data-set family (``cifar10-jpeg`` is close to ``cifar10`` but not it),
and the table says in which respects the recipes differ, so nobody mistakes it for a
reproduction check.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd

from robench.errors import RobenchError
from robench.reporting.leaderboard import headline_metrics

#: the file shipped with the repository (absent in a non-editable install)
PUBLISHED_CSV = Path(__file__).resolve().parents[2] / "baselines" / "published.csv"
COLUMNS = ["method", "model", "dataset", "epochs", "options", "metric", "value", "std", "source"]
COMPARISON_COLUMNS = [
    "label",
    "setting",
    "metric",
    "ours",
    "ours_ci_low",
    "ours_ci_high",
    "n_seeds",
    "published",
    "published_std",
    "gap",
    "source",
]


def parse_options(text: str) -> dict[str, Any]:
    """``{jsd = true}`` (a TOML inline table) -> dict; empty text -> {}."""
    text = text.strip()
    if not text:
        return {}
    try:
        return tomllib.loads(f"options = {text}")["options"]
    except tomllib.TOMLDecodeError as err:
        raise RobenchError(f"options {text!r} is not a TOML inline table ({err})") from None


def load_published(path: str | Path = PUBLISHED_CSV) -> pd.DataFrame:
    """Read and check the published numbers: known metrics, numeric values, parseable options."""
    path = Path(path)
    if not path.is_file():
        raise RobenchError(f"published numbers file {str(path)!r} not found")
    table = pd.read_csv(path, comment="#", dtype={"options": str, "source": str}).fillna(
        {"options": "", "notes": ""}
    )
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise RobenchError(f"{path}: missing columns {', '.join(missing)}")
    headline = headline_metrics()
    unknown = sorted(set(table["metric"]) - set(headline))
    if unknown:
        raise RobenchError(f"{path}: unknown metrics {unknown}; use {', '.join(headline)}")
    for column in ("value", "std", "epochs"):
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = table[column][numbers.isna() & table[column].notna()]
        if len(bad) or (column != "std" and numbers.isna().any()):
            first = bad.iloc[0] if len(bad) else "an empty cell"
            raise RobenchError(f"{path}: column {column!r} holds {first!r}, not a number")
        table[column] = numbers
    table["epochs"] = table["epochs"].astype(int)
    table["options"].map(parse_options)  # fails early on a malformed cell
    return table


def _family(dataset: str) -> str:
    """``cifar10-jpeg`` -> ``cifar10``: the data set a variant was made from."""
    return dataset.split("-")[0].split(":")[-1]


def _options_match(published: str, resolved: dict[str, Any]) -> bool:
    return all(resolved.get(k) == v for k, v in parse_options(published).items())


def _row(board_row: pd.Series, metric: str, pub: pd.Series) -> dict[str, Any]:
    ours = board_row[metric]
    return {
        "label": board_row["label"],
        "setting": board_row["setting"],
        "metric": metric,
        "ours": ours,
        "ours_ci_low": board_row[f"{metric}_ci_low"],
        "ours_ci_high": board_row[f"{metric}_ci_high"],
        "n_seeds": board_row["n_seeds"],
        "published": pub["value"],
        "published_std": pub["std"],
        "gap": ours - pub["value"],
        "source": pub["source"],
    }


def compare(
    board: pd.DataFrame, augment: dict[str, dict[str, Any]], published: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(matching, closest): published numbers beside leaderboard rows.

    ``augment`` maps a recipe to its resolved augmentation options. ``matching`` holds the
    comparable cells (gap = ours - published); ``closest`` the nearest published cell for the
    rest, with a ``differs_in`` column.
    """
    matching, closest = [], []
    for _, row in board.iterrows():
        for metric in (m for m in headline_metrics() if m in board and not math.isnan(row[m])):
            same = published[
                (published["method"] == row["method"]) & (published["metric"] == metric)
            ]
            same = same[same["dataset"].map(_family) == _family(row["dataset"])]
            if same.empty:
                continue
            resolved = augment.get(row["recipe"], {})
            opts = pd.Series([_options_match(o, resolved) for o in same["options"]], same.index)
            score = pd.DataFrame(
                {
                    "dataset": same["dataset"] == row["dataset"],
                    "model": same["model"] == row["model"],
                    "epochs": same["epochs"] == row["epochs"],
                    "options": opts,
                    "near": -(same["epochs"] - row["epochs"]).abs(),
                }
            )
            best = score.sort_values(["dataset", "model", "options", "near"], ascending=False)
            pub = same.loc[best.index[0]]
            hit = best.iloc[0]
            if hit[["dataset", "model", "epochs", "options"]].all():
                matching.append(_row(row, metric, pub))
                continue
            differs = [
                f"{key} ({row[key]} vs {pub[key]})"
                for key in ("dataset", "model", "epochs")
                if not hit[key]
            ]
            if not hit["options"]:
                differs.append(f"options (published {pub['options']})")
            closest.append(_row(row, metric, pub) | {"differs_in": "; ".join(differs)})
    return (
        pd.DataFrame(matching, columns=COMPARISON_COLUMNS),
        pd.DataFrame(closest, columns=[*COMPARISON_COLUMNS, "differs_in"]),
    )
