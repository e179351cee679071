"""Per-example outcomes of a run (``records.npz``) as :class:`~robench.reporting.stats.Examples`,
so that the leaderboard's bootstrap intervals and the claims' paired tests agree.

Which value can be recomputed from which records is the metric's own knowledge: each metric
that declares values with ``ci="examples"`` carries ``metric.per_example``
(:mod:`robench.evaluation.base`), plugins included. All such values are means of per-example
outcomes, which the bootstrap estimates without bias. The RMS calibration error is left out on
purpose: resampling with replacement repeats examples inside its bins, which inflates the binned
gaps, so bootstrap intervals of a well-calibrated model can miss the estimate itself; it gets
intervals and tests from seeds only.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from robench.evaluation.base import METRICS
from robench.evaluation.functional import percent_error
from robench.reporting.stats import Examples
from robench.runs import read_records, read_table


def run_examples(run_dir: Path, data_hash: str) -> dict[str, Examples]:
    """Every value of the run that its metrics can recompute from its records, by value name.

    ``data_hash`` is the content hash of the evaluated test set (part of the pairing key).
    """
    records = read_records(run_dir)
    out: dict[str, Examples] = {}
    for metric in sorted({key.split("/", 1)[0] for key in records if "/" in key}):
        known = metric in METRICS
        per_example = getattr(METRICS.get(metric), "per_example", None) if known else None
        if per_example is None:  # a metric unknown here, or one without per-example values
            continue
        own = {k.split("/", 1)[1]: v for k, v in records.items() if k.startswith(f"{metric}/")}
        table = functools.partial(read_table, run_dir, metric)
        for value, outcomes in per_example(own, table).items():
            key = f"{data_hash}:{outcomes.examples}"
            out[value] = Examples(np.asarray(outcomes.correct, dtype=float), percent_error, key)
    return out
