"""Result tables: every run gathered into pandas tables (one row per run, long format, pivots).

A run's *recipe* is everything that decides what it computes except the seed: the resolved
config without the seed and machine-only keys, the resolved augmentation options and the content
hashes of its training and test data (so a data path spelt two ways is still one recipe). Runs of
one recipe are the seeds that the leaderboard averages; :func:`recipe_key` gives it as a short
hash. The *base recipe* leaves the augmentation out: the ``baseline`` run of the same base recipe
and seed is the reference of a run's mCE.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robench.errors import ConfigError
from robench.evaluation.base import declared_values
from robench.evaluation.functional import alexnet_mce, mce
from robench.io import atomic_write, hash_text
from robench.runs import list_runs, read_metrics, read_table, runs_root

ID_COLUMNS = ["run_id", "method", "model", "dataset", "epochs", "seed"]
#: the recipe columns a reader sees (``recipe`` is their short hash, plus the rest of the config)
RECIPE_COLUMNS = [
    "recipe",
    "label",
    "setting",
    "config_name",
    "method",
    "method_options",
    "model",
    "dataset",
    "epochs",
    "train_images",
    "test_images",
]
#: the identity columns of the per-corruption and per-severity tables
PIVOT_ID = ["recipe", "label", "setting", "method", "method_options", "n_seeds"]
#: the method a run's mCE is normalised by, and the order methods are listed in
REFERENCE_METHOD = "baseline"
METHOD_ORDER = ["baseline", "cutmix", "mixup", "augmix", "pixmix", "ipmix"]

# config keys that do not change what a run computes (where it runs, how fast, which metrics)
_NOT_RECIPE = [
    ("seed",),
    ("results_dir",),
    ("data", "dataset"),  # the data's content hashes identify it instead
    ("data", "root"),
    ("train", "workers"),
    ("train", "threads"),
    ("train", "device"),
    ("evaluate", "metrics"),
    ("evaluate", "batch_size"),
    ("log",),
    ("sweep",),
    ("augment", "options"),  # the resolved options (metrics.json "augment") identify it instead
]


def _drop(tree: dict[str, Any], path: tuple[str, ...]) -> None:
    for part in path[:-1]:
        tree = tree.get(part, {})
    tree.pop(path[-1], None)


def recipe_key(doc: dict[str, Any], *, with_method: bool = True) -> str:
    """Short hash of the recipe of a run's metrics.json (``with_method=False``: base recipe)."""
    cfg = copy.deepcopy(doc["config"])
    for path in _NOT_RECIPE:
        _drop(cfg, path)
    ident: dict[str, Any] = {
        "config": cfg,
        "train_data": _trained_on(doc).get("content_hash"),
        "test_data": doc["data"]["test"]["content_hash"],
    }
    if with_method:
        ident["augment"] = doc.get("augment", {})
    else:
        cfg.pop("augment", None)
    return hash_text(json.dumps(ident, sort_keys=True, default=str))[:10]


def inline_options(options: dict[str, Any]) -> str:
    """Options as a TOML inline table, ``{jsd = false}``; empty string for none."""
    if not options:
        return ""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        return json.dumps(v) if isinstance(v, str | list) else str(v)

    return "{" + ", ".join(f"{k} = {value(v)}" for k, v in sorted(options.items())) + "}"


def _trained_on(doc: dict[str, Any]) -> dict[str, Any]:
    """The identity of a run's training data; empty for a model trained elsewhere (a run of
    kind "external", whose recipe is its weights: ``config.model.weights``)."""
    return doc["data"].get("train") or {}


def run_row(doc: dict[str, Any]) -> dict[str, Any]:
    """One flat row: who the run is (recipe, seed) and every metric value. A model trained
    elsewhere has 0 epochs and 0 training images here, and no epochs in its setting."""
    cfg = doc["config"]
    options = inline_options(cfg["augment"].get("options", {}))
    method = cfg["augment"]["method"]
    data = doc["data"]
    evaluated = data.get("eval", data["test"])
    epochs = cfg.get("train", {}).get("epochs", 0)
    setting = [cfg["name"], cfg["model"]["name"], data["test"]["name"]]
    row: dict[str, Any] = {
        "run_id": doc["run_id"],
        "recipe": recipe_key(doc),
        "base_recipe": recipe_key(doc, with_method=False),
        "label": f"{method} {options}".strip(),
        "setting": " / ".join(setting + ([f"{epochs} ep"] if epochs else [])),
        "config_name": cfg["name"],
        "method": method,
        "method_options": options,
        "augment": doc.get("augment", {}),
        "model": cfg["model"]["name"],
        "dataset": data["test"]["name"],
        "epochs": epochs,
        "seed": doc["seed"],
        "train_images": _trained_on(doc).get("count", 0),
        "test_images": evaluated["count"],
        "eval_data_hash": evaluated["content_hash"],
        "parameters": doc["model"]["parameters"],
    }
    for values in doc.get("metrics", {}).values():
        row.update(values)
    return row


def method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def sort_recipes(table: pd.DataFrame, extra: list[str] | None = None) -> pd.DataFrame:
    """Order: data set, model, epochs, config, then baseline, cutmix, ..., ipmix, others."""
    keys = ["dataset", "model", "epochs", "config_name", "_rank", "method", "method_options"]
    ranked = table.assign(_rank=table["method"].map(method_rank))
    return ranked.sort_values([*keys, *(extra or [])]).drop(columns="_rank").reset_index(drop=True)


def gather_runs(
    results_dir: str | Path = "results", *, mce_reference: str | None = None
) -> pd.DataFrame:
    """A table with one row per finished run under ``<results_dir>/runs``, with its mCE columns
    (``mce_reference``: a run id that normalises every run, see :func:`add_mce`)."""
    rows = [run_row(doc) for doc in map(read_metrics, list_runs(results_dir)) if doc]
    if not rows:
        return pd.DataFrame(columns=ID_COLUMNS)
    table = sort_recipes(pd.DataFrame(rows), ["seed"])
    return add_mce(table, results_dir, reference=mce_reference)


def corruption_errors(results_dir: str | Path, run_id: str) -> pd.DataFrame | None:
    """A run's (corruption, severity, error, ...) table, or None when it was not evaluated."""
    return read_table(runs_root(results_dir) / run_id, "corruption", "errors")


#: the per-run values that :func:`add_mce` derives from the metrics' own
DERIVED_VALUES = (
    "mce_vs_baseline",
    "relative_mce_vs_baseline",
    "mce_vs_reference",
    "relative_mce_vs_reference",
    "relative_mce_alexnet",
)


def add_mce(
    runs: pd.DataFrame, results_dir: str | Path, *, reference: str | None = None
) -> pd.DataFrame:
    """The mCE columns (%), the ImageNet-C formulas (docs/metrics.md#mce) with three references:

    * ``mce_vs_baseline`` / ``relative_mce_vs_baseline``: the ``baseline`` run of the same base
      recipe and seed, evaluated on the same corruptions, in AlexNet's place (100 = as robust
      as the baseline);
    * ``mce_vs_reference`` / ``relative_mce_vs_reference`` (only when ``reference``, a run id,
      is given): that one run for every run evaluated on the same (corruption, severity) pairs;
    * ``relative_mce_alexnet`` next to the metric's own ``mce_alexnet`` (ImageNet-C runs): AlexNet.

    NaN where the reference is missing or not comparable.
    """
    out = runs.assign(mce_vs_baseline=np.nan, relative_mce_vs_baseline=np.nan)
    refs = runs[runs["method"] == REFERENCE_METHOD]
    for i, run in runs.iterrows():
        ref = refs[(refs["base_recipe"] == run["base_recipe"]) & (refs["seed"] == run["seed"])]
        if len(ref) == 1:
            numbers = _mce_against(run, ref.iloc[0], results_dir)
            out.loc[i, ["mce_vs_baseline", "relative_mce_vs_baseline"]] = numbers
    if reference is not None:
        chosen = runs[runs["run_id"] == reference]
        if len(chosen) != 1:
            raise ConfigError(
                f"mCE reference run {reference!r} is not a finished run under "
                f"{runs_root(results_dir)}; give one of its run ids"
            )
        out = out.assign(mce_vs_reference=np.nan, relative_mce_vs_reference=np.nan)
        for i, run in runs.iterrows():
            numbers = _mce_against(run, chosen.iloc[0], results_dir)
            out.loc[i, ["mce_vs_reference", "relative_mce_vs_reference"]] = numbers
    if "mce_alexnet" in runs:
        out = out.assign(relative_mce_alexnet=np.nan)
        for i, run in runs[runs["mce_alexnet"].notna()].iterrows():
            errors = corruption_errors(results_dir, run["run_id"])
            if errors is not None:
                clean = run.get("clean_error", np.nan)
                out.loc[i, "relative_mce_alexnet"] = alexnet_mce(errors, clean_error=clean)[
                    "relative_mce"
                ]
    return out


def _mce_against(run: pd.Series, ref: pd.Series, results_dir: str | Path) -> tuple[float, float]:
    """(mCE, relative mCE) of ``run`` normalised by run ``ref``; NaN when not comparable."""
    errors = corruption_errors(results_dir, run["run_id"])
    ref_errors = corruption_errors(results_dir, ref["run_id"])
    if errors is None or ref_errors is None:
        return np.nan, np.nan
    try:
        numbers = mce(
            errors,
            ref_errors,
            clean_error=run.get("clean_error", np.nan),
            reference_clean_error=ref.get("clean_error", np.nan),
        )
    except ConfigError:  # the reference lacks some (corruption, severity): not comparable
        return np.nan, np.nan
    return numbers["mce"], numbers["relative_mce"]


#: per-run columns that describe the run rather than measure it
NOT_METRICS = {
    *RECIPE_COLUMNS,
    *ID_COLUMNS,
    "base_recipe",
    "augment",
    "eval_data_hash",
    "parameters",
}
LONG_COLUMNS = [
    "run_id",
    "recipe",
    "label",
    "setting",
    "method",
    "model",
    "dataset",
    "epochs",
    "seed",
    "metric",
    "corruption",
    "severity",
    "value",
]


def split_name(name: str, declared: list[str]) -> tuple[str, str | None]:
    """``corruption_error_fog`` -> (corruption_error, fog), ``fp_rotate`` -> (fp, rotate): a value
    that a metric declares with a trailing wildcard (``corruption_error_*``, see
    :func:`~robench.evaluation.base.declared_values`) splits into the wildcard's stem and the
    part; a name declared as it is (``ood_auroc_mean``) or not at all -> (name, None)."""
    if name not in declared:
        for pattern in declared:
            stem = pattern.removesuffix("_*")
            if stem != pattern and "*" not in stem and name.startswith(f"{stem}_"):
                return stem, name[len(stem) + 1 :]
    return name, None


def long_table(runs: pd.DataFrame, results_dir: str | Path) -> pd.DataFrame:
    """One row per (run, metric, corruption, severity, value): the format that pivots into
    RobustBench's (corruption, severity) x model tables.

    Scalars of metrics.json have no severity; the values a metric declares per part
    (``corruption_error_<c>``, ``fp_<perturbation>``, ``ood_auroc_<set>``) carry the part's name
    (a corruption, a CIFAR-P perturbation, an OOD set) in ``corruption``; the rows of
    ``corruption_errors.csv`` carry both (metrics ``corruption_error`` and
    ``corruption_rms_calibration_error``).
    """
    declared = declared_values()
    ident = [c for c in LONG_COLUMNS[:9] if c in runs]
    rows: list[dict[str, Any]] = []
    for _, run in runs.iterrows():
        who = {c: run[c] for c in ident}
        for name, value in run.items():
            if name in NOT_METRICS or not isinstance(value, int | float) or pd.isna(value):
                continue
            metric, corruption = split_name(str(name), declared)
            rows.append({**who, "metric": metric, "corruption": corruption, "value": value})
        errors = corruption_errors(results_dir, run["run_id"])
        for r in [] if errors is None else errors.itertuples():
            for metric, value in (
                ("corruption_error", r.error),
                ("corruption_rms_calibration_error", r.rms_calibration_error),
            ):
                rows.append(
                    {**who, "metric": metric, "corruption": r.corruption}
                    | {"severity": r.severity, "value": value}
                )
    table = pd.DataFrame(rows, columns=LONG_COLUMNS)
    return table.astype({"severity": "Int64"}) if len(table) else table


def _per_recipe(board: pd.DataFrame, values: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Join per-recipe values (mean over seeds) onto the leaderboard's identity columns."""
    table = board[PIVOT_ID].merge(values, left_on="recipe", right_index=True, how="inner")
    return table[[*PIVOT_ID, *columns]].reset_index(drop=True)


def by_corruption(long: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """Method x corruption: error (%) per corruption averaged over severities, then seeds."""
    x = long[(long["metric"] == "corruption_error") & long["corruption"].notna()]
    x = x[x["severity"].isna()]
    if x.empty:
        return pd.DataFrame()
    order = list(dict.fromkeys(x["corruption"]))
    wide = x.pivot_table(index="recipe", columns="corruption", values="value", aggfunc="mean")
    wide = wide[order].assign(mean=wide[order].mean(axis=1))
    return _per_recipe(board, wide, [*order, "mean"])


def by_severity(long: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """Method x severity: error (%) per severity averaged over corruptions, then seeds; the
    ``clean`` column (severity 0) is the clean error."""
    x = long[(long["metric"] == "corruption_error") & long["severity"].notna()]
    if x.empty:
        return pd.DataFrame()
    per_run = x.groupby(["recipe", "run_id", "severity"])["value"].mean().reset_index()
    wide = per_run.pivot_table(index="recipe", columns="severity", values="value", aggfunc="mean")
    wide.columns = [f"s{int(s)}" for s in wide.columns]
    clean = long[(long["metric"] == "clean_error") & long["corruption"].isna()]
    wide.insert(0, "clean", clean.groupby("recipe")["value"].mean())
    return _per_recipe(board, wide, list(wide.columns))


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    with atomic_write(path) as f:
        table.to_csv(f, index=False, float_format="%.4f")
    return path


def run_summary(runs: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """One run's row for a terminal: who it is and its overall numbers (no hashes, no
    per-corruption, per-perturbation or per-OOD-set values; those are in runs.csv)."""
    row = runs[runs["run_id"] == run_id]
    hidden = {"run_id", "recipe", "base_recipe", "augment", "eval_data_hash", "label", "setting"}
    declared = declared_values()

    def shown(name: str) -> bool:
        return name not in hidden and split_name(name, declared)[1] is None

    return row[[c for c in row.columns if shown(c)]].dropna(axis=1, how="all")
