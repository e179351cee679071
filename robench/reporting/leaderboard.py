"""The leaderboard: one row per recipe, each headline metric as mean, std and 95 % CI over seeds.

Confidence intervals: with >= 2 seeds a t-interval over the seeds; with one seed a percentile
bootstrap over the test examples from the run's ``records.npz``, for the values whose metric
declares ``ci = "examples"`` (clean, corruption, C-Bar and PGD error; see
:mod:`robench.reporting.examples`); the others get no one-seed interval. The ``ci_method``
column says which was used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robench.config import ALL_METRICS
from robench.evaluation.base import EXAMPLES, METRICS, ValueInfo, metric_values
from robench.registry import BUILT_IN
from robench.reporting.examples import run_examples
from robench.reporting.stats import bootstrap_interval, t_interval
from robench.reporting.tables import RECIPE_COLUMNS
from robench.runs import runs_root

#: the headline values the report derives from the metrics' own (robench.reporting.tables)
DERIVED = {
    "mce_vs_baseline": ValueInfo(
        "mCE vs the baseline run", unit="% of baseline", headline=True, short="mCE"
    ),
    "relative_mce_vs_baseline": ValueInfo(
        "Relative mCE vs the baseline run", unit="% of baseline", headline=True,
        short="Relative mCE",
    ),
    "mce_vs_reference": ValueInfo(
        "mCE vs the --mce-reference run", unit="% of reference", headline=True,
        short="mCE (ref.)",
    ),
    "relative_mce_vs_reference": ValueInfo(
        "Relative mCE vs the --mce-reference run", unit="% of reference", headline=True,
        short="Rel. mCE (ref.)",
    ),
    "relative_mce_alexnet": ValueInfo(
        "ImageNet-C relative mCE (AlexNet-normalised)", unit="% of AlexNet", headline=True,
        short="Rel. mCE (AlexNet)",
    ),
}  # fmt: skip
#: where each derived value stands: after the value it is derived from
_DERIVED_AFTER = {
    "corruption_error": [
        "mce_vs_baseline", "relative_mce_vs_baseline", "mce_vs_reference",
        "relative_mce_vs_reference",
    ],
    "mce_alexnet": ["relative_mce_alexnet"],
}  # fmt: skip


def headline_metrics() -> dict[str, ValueInfo]:
    """The headline values in leaderboard order: those the metrics declare (``metric.values``
    with ``headline=True``; the suite's metrics first, in suite order, then the others and
    plugins), each followed by the values the report derives from it."""
    rest = sorted(
        (e for e in METRICS.entries() if e.name not in ALL_METRICS),
        key=lambda e: (e.origin != BUILT_IN, e.name),
    )
    order = [*ALL_METRICS, *(e.name for e in rest)]
    out: dict[str, ValueInfo] = {}
    for metric in order:
        for value, info in metric_values(metric).items():
            if info.headline and "*" not in value and value not in out:
                out[value] = info
                out |= {d: DERIVED[d] for d in _DERIVED_AFTER.get(value, [])}
    return out


T_SEEDS = "t over seeds"
BOOTSTRAP = "bootstrap over test examples"


def leaderboard(runs: pd.DataFrame, results_dir: str | Path) -> pd.DataFrame:
    """Aggregate the per-run table (:func:`~robench.reporting.tables.gather_runs`) by recipe.

    Columns: the recipe columns, ``n_seeds``, ``seeds``, ``ci_method``, then for each headline
    metric present in some run ``<m>`` (mean), ``<m>_std``, ``<m>_ci_low``, ``<m>_ci_high``.
    """
    infos = headline_metrics()
    metrics = [m for m in infos if m in runs and runs[m].notna().any()]
    rows = []
    for _, group in runs.groupby("recipe", sort=False):
        first = group.iloc[0]
        row: dict[str, Any] = {c: first[c] for c in RECIPE_COLUMNS}
        row["n_seeds"] = len(group)
        row["seeds"] = " ".join(str(s) for s in sorted(group["seed"]))
        methods = set()
        examples = None
        for m in metrics:
            values = group[m].dropna().to_numpy(dtype=float)
            low = high = np.nan
            if len(values) >= 2:
                low, high = t_interval(values)
                methods.add(T_SEEDS)
            elif len(values) == 1:
                run = group[group[m].notna()].iloc[0]
                if examples is None or examples[0] != run["run_id"]:
                    run_dir = runs_root(results_dir) / run["run_id"]
                    examples = (run["run_id"], run_examples(run_dir, run["eval_data_hash"]))
                if m in examples[1] and infos[m].ci == EXAMPLES:
                    low, high = bootstrap_interval(examples[1][m])
                    methods.add(BOOTSTRAP)
            row[m] = values.mean() if len(values) else np.nan
            row[f"{m}_std"] = values.std(ddof=1) if len(values) >= 2 else np.nan
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = low, high
        row["ci_method"] = " + ".join(sorted(methods)) or "none"
        rows.append(row)
    columns = [*RECIPE_COLUMNS, "n_seeds", "seeds", "ci_method"]
    columns += [f"{m}{s}" for m in metrics for s in ("", "_std", "_ci_low", "_ci_high")]
    return pd.DataFrame(rows, columns=columns)
