"""Per-example outcomes of a run (``records.npz``) as :class:`~robench.report.stats.Examples`.

Which metric can be recomputed from which records is knowledge about the evaluators, kept here
so that the leaderboard's bootstrap intervals and the claims' paired tests agree:

* ``clean_error`` from ``clean/pred`` and ``clean/label``;
* ``corruption_error`` (and ``corruption_error_<name>``) from ``corruption/correct`` (C, S, N):
  an example's outcome is its accuracy over the corruptions x severities, so a resample keeps the
  same images under every corruption (as the benchmark does);
* ``pgd_error`` from ``pgd/adv_correct``;
* ``rms_calibration_error`` from ``calibration/confidence`` and ``calibration/correct``, binned
  with the settings the run used (``tables/calibration_settings.csv``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import numpy as np
import pandas as pd

from robench.evaluate.calibration import rms_calibration_error
from robench.io import hash_arrays
from robench.report.stats import Examples
from robench.runs import read_records


def _error(correct: np.ndarray) -> float:
    return 100.0 * (1.0 - float(correct.mean()))


def _rms(bin_size: int, skip_last_bin: bool) -> Callable[[np.ndarray], float]:
    def statistic(values: np.ndarray) -> float:
        return 100.0 * rms_calibration_error(
            values[:, 0], values[:, 1], bin_size=bin_size, skip_last_bin=skip_last_bin
        )

    return statistic


def run_examples(run_dir: Path, data_hash: str) -> dict[str, Examples]:
    """Every metric of the run that its records allow to resample, by metric name.

    ``data_hash`` is the content hash of the evaluated test set (part of the pairing key).
    """
    records = read_records(run_dir)
    out: dict[str, Examples] = {}
    if {"clean/pred", "clean/label"} <= records.keys():
        correct = (records["clean/pred"] == records["clean/label"]).astype(float)
        out["clean_error"] = Examples(correct, _error, f"{data_hash}:all")
    if "corruption/correct" in records:
        correct = records["corruption/correct"].astype(float)  # (C, S, N)
        index = records.get("corruption/index", np.arange(correct.shape[-1]))
        key = f"{data_hash}:corruption:{hash_arrays(index)}"
        out["corruption_error"] = Examples(correct.mean(axis=(0, 1)), _error, key)
        table = run_dir / "tables" / "corruption_errors.csv"
        if table.is_file():
            names = pd.read_csv(table)["corruption"].drop_duplicates().tolist()
            for c, name in enumerate(names[: correct.shape[0]]):
                out[f"corruption_error_{name}"] = Examples(correct[c].mean(axis=0), _error, key)
    if "pgd/adv_correct" in records:
        adv = records["pgd/adv_correct"].astype(float)
        out["pgd_error"] = Examples(adv, _error, f"{data_hash}:first{len(adv)}")
    if {"calibration/confidence", "calibration/correct"} <= records.keys():
        settings = run_dir / "tables" / "calibration_settings.csv"
        row = pd.read_csv(settings).iloc[0] if settings.is_file() else {}
        statistic = _rms(int(row.get("bin_size", 100)), bool(row.get("skip_last_bin", False)))
        values = np.stack(
            [records["calibration/confidence"], records["calibration/correct"].astype(float)], 1
        )
        out["rms_calibration_error"] = Examples(values, statistic, f"{data_hash}:all")
    return out
