"""Per-example outcomes of a run (``records.npz``) as :class:`~robench.reporting.stats.Examples`.

Which metric can be recomputed from which records is knowledge about the evaluators, kept here
so that the leaderboard's bootstrap intervals and the claims' paired tests agree:

* ``clean_error`` from ``clean/pred`` and ``clean/label``;
* ``corruption_error`` (and ``corruption_error_<name>``) from ``corruption/correct`` (C, S, N):
  an example's outcome is its accuracy over the corruptions x severities, so a resample keeps the
  same images under every corruption (as the benchmark does);
* ``pgd_error`` from ``pgd/adv_correct``.

All of them are means of per-example outcomes, which the bootstrap estimates without bias. The
RMS calibration error is left out on purpose: resampling with replacement repeats examples inside
its bins, which inflates the binned gaps, so bootstrap intervals of a well-calibrated model can
miss the estimate itself; it gets intervals and tests from seeds only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from robench.io import hash_arrays
from robench.reporting.stats import Examples
from robench.runs import read_records


def _error(correct: np.ndarray) -> float:
    return 100.0 * (1.0 - float(correct.mean()))


def run_examples(run_dir: Path, data_hash: str) -> dict[str, Examples]:
    """Every metric of the run that its records allow to resample, by metric name.

    ``data_hash`` is the content hash of the evaluated test set (part of the pairing key).
    """
    records = read_records(run_dir)
    out: dict[str, Examples] = {}
    if {"clean/pred", "clean/label"} <= records.keys():
        correct = (records["clean/pred"] == records["clean/label"]).astype(float)
        out["clean_error"] = Examples(correct, _error, f"{data_hash}:all")
    for metric, value in (("corruption", "corruption_error"), ("corruption_bar", "cbar_error")):
        if f"{metric}/correct" not in records:
            continue
        correct = records[f"{metric}/correct"].astype(float)  # (C, S, N)
        index = records.get(f"{metric}/index", np.arange(correct.shape[-1]))
        key = f"{data_hash}:{metric}:{hash_arrays(index)}"
        out[value] = Examples(correct.mean(axis=(0, 1)), _error, key)
        table = run_dir / "tables" / f"{metric}_errors.csv"
        if table.is_file():
            names = pd.read_csv(table)["corruption"].drop_duplicates().tolist()
            for c, name in enumerate(names[: correct.shape[0]]):
                out[f"{value}_{name}"] = Examples(correct[c].mean(axis=0), _error, key)
    if "pgd/adv_correct" in records:
        adv = records["pgd/adv_correct"].astype(float)
        out["pgd_error"] = Examples(adv, _error, f"{data_hash}:first{len(adv)}")
    return out
