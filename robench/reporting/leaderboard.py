"""The leaderboard: one row per recipe, each headline metric as mean, std and 95 % CI over seeds.

Confidence intervals: with >= 2 seeds a t-interval over the seeds; with one seed a percentile
bootstrap over the test examples from the run's ``records.npz`` (clean, corruption, C-Bar and PGD
error, see :mod:`robench.reporting.examples`; the other metrics get no interval). The
``ci_method`` column says which was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robench.errors import RobenchError
from robench.evaluation.base import METRICS
from robench.reporting.examples import run_examples
from robench.reporting.stats import bootstrap_interval, t_interval
from robench.reporting.tables import RECIPE_COLUMNS
from robench.runs import runs_root


@dataclass(frozen=True)
class MetricInfo:
    """How a headline metric is shown: name, unit, which direction is better, and a short name
    for table headers (the title when none is given)."""

    title: str
    unit: str
    higher_is_better: bool = False
    short: str = ""

    @property
    def column(self) -> str:
        return self.short or self.title

    @property
    def better(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


#: the headline metrics, in leaderboard order (per-run values of the same name)
HEADLINE = {
    "clean_error": MetricInfo("Clean error", "%", short="Clean error"),
    "corruption_error": MetricInfo(
        "Corruption error (mean over corruptions x severities)", "%", short="Corruption error"
    ),
    "cbar_error": MetricInfo(
        "C-Bar corruption error (mean over corruptions x severities)", "%", short="C-Bar error"
    ),
    "mce_vs_baseline": MetricInfo("mCE vs the baseline run", "% of baseline", short="mCE"),
    "relative_mce_vs_baseline": MetricInfo(
        "Relative mCE vs the baseline run", "% of baseline", short="Relative mCE"
    ),
    "mce_vs_reference": MetricInfo(
        "mCE vs the --mce-reference run", "% of reference", short="mCE (ref.)"
    ),
    "relative_mce_vs_reference": MetricInfo(
        "Relative mCE vs the --mce-reference run", "% of reference", short="Rel. mCE (ref.)"
    ),
    "mce_alexnet": MetricInfo(
        "ImageNet-C mCE (AlexNet-normalised)", "% of AlexNet", short="mCE (AlexNet)"
    ),
    "relative_mce_alexnet": MetricInfo(
        "ImageNet-C relative mCE (AlexNet-normalised)", "% of AlexNet", short="Rel. mCE (AlexNet)"
    ),
    "rendition_error": MetricInfo(
        "ImageNet-R error (200-class mask)", "%", short="ImageNet-R error"
    ),
    "rms_calibration_error": MetricInfo(
        "RMS calibration error (clean)", "%", short="RMS calibration"
    ),
    "mfp": MetricInfo("Mean flip probability (CIFAR-P)", "%", short="mFP"),
    "pgd_error": MetricInfo("PGD error", "%", short="PGD error"),
    "ood_auroc_mean": MetricInfo(
        "OOD AUROC (mean over sets)", "%", higher_is_better=True, short="OOD AUROC"
    ),
}


def headline_metrics() -> dict[str, MetricInfo]:
    """The built-in headline metrics, then those that metric plugins declare.

    A metric plugin names its headline values in a ``headline`` attribute, ``{value name:
    {"title": ..., "unit": ..., "higher_is_better": ...}}`` (see :mod:`robench.evaluation.base`);
    they get leaderboard columns, a bar chart and page columns like the built-in ones. A
    declaration that is not such a mapping is an error naming the plugin."""
    out = dict(HEADLINE)
    for name in METRICS.names():
        declared = getattr(METRICS.get(name), "headline", None) or {}
        try:
            infos = {value: MetricInfo(**info) for value, info in dict(declared).items()}
        except (TypeError, ValueError) as err:
            raise RobenchError(
                f"metric plugin {name!r} has a malformed headline ({err}); it must map value "
                "names to {title = ..., unit = ..., higher_is_better = ...}"
            ) from None
        out |= {value: info for value, info in infos.items() if value not in HEADLINE}
    return out


T_SEEDS = "t over seeds"
BOOTSTRAP = "bootstrap over test examples"


def leaderboard(runs: pd.DataFrame, results_dir: str | Path) -> pd.DataFrame:
    """Aggregate the per-run table (:func:`~robench.reporting.tables.gather_runs`) by recipe.

    Columns: the recipe columns, ``n_seeds``, ``seeds``, ``ci_method``, then for each headline
    metric present in some run ``<m>`` (mean), ``<m>_std``, ``<m>_ci_low``, ``<m>_ci_high``.
    """
    metrics = [m for m in headline_metrics() if m in runs and runs[m].notna().any()]
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
                if m in examples[1]:
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
