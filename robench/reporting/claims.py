"""Claims about results, checked against the runs of the recipe they are made for.

``robench check CLAIMS.toml`` (or :func:`check_claims` / :func:`assert_claims` in a test suite)
reads a TOML file of claims::

    [defaults]                  # optional; any of these keys can also be set per claim
    tolerance = 0.0             # slack in the metric's unit, granted in the claim's favour
    alpha = 0.05                # require p < alpha (omit: the p-value is reported, not required)
    min_seeds = 1               # fewer runs on a side -> NOT-ENOUGH-DATA

    [defaults.recipe]           # the recipe every claim is made for
    config = "paper_wrn40_4"    # the config's `name`
    model = "wrn_40_4"
    dataset = "cifar10"         # as recorded: cifar10, cifar100, cifar10-jpeg, npz:<name>
    epochs = 100
    options = {ipmix = {jsd = true}}   # per method: resolved augmentation options runs must have

    [[claim]]
    name = "IPMix is more robust to corruptions than AugMix"   # optional
    check = "ipmix.corruption_error < augmix.corruption_error"
    source = "IPMix v5 Table 4 (8.6 vs 10.0)"                  # optional
    recipe = {dataset = "cifar100"}                            # merged key by key over defaults

``check`` is ``SIDE OP SIDE`` with OP one of ``< <= > >=`` and SIDE either a number or
``[k *] method.metric [+|- c]``; ``metric`` is any per-run value (``robench report`` writes
them to ``runs.csv``: clean_error, corruption_error, mce_vs_baseline, rms_calibration_error,
mfp, pgd_error, ood_auroc_mean, ...): one that a metric plugin declares in its
``value_names``, that the report derives, or that the runs hold. A side's value is the mean over
the seeds of its runs.

A claim ``A < B`` with tolerance t holds when A < B + t (``>``: A > B - t); ``margin`` is by how
much it holds (negative: by how much it misses). The p-value tests the same inequality, H1:
A - B < t: Welch's t-test over seeds when both sides have >= 2 runs (one-sample t against a
number), a paired bootstrap over test examples when both have one run with per-example records
(clean, corruption, C-Bar and PGD error). Status: FAIL when the point estimate
misses; NOT-ENOUGH-DATA when a side has no (or too few) runs of the recipe, when several recipes
match a side (pin the options), or when ``alpha`` is set and the test is impossible or not
significant; PASS otherwise.

A check fails closed: NOT-ENOUGH-DATA counts as failing (``robench check`` exits 1) unless
missing data is allowed explicitly (``--allow-missing``), so a claim never passes on data that is
not there. A method or metric that no plugin provides is a mistake in the file, refused before
any claim is judged.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robench.errors import ConfigError
from robench.reporting.examples import run_examples
from robench.reporting.stats import Alternative, Examples, bootstrap_p, welch_p
from robench.reporting.tables import DERIVED_VALUES, NOT_METRICS, gather_runs, inline_options
from robench.runs import runs_root

PASS, FAIL, NOT_ENOUGH_DATA = "PASS", "FAIL", "NOT-ENOUGH-DATA"
RECIPE_KEYS = ("config", "model", "dataset", "epochs")
CLAIM_KEYS = {"name", "check", "source", "recipe", "tolerance", "alpha", "min_seeds"}
DEFAULT_KEYS = {"recipe", "tolerance", "alpha", "min_seeds"}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_SIDE = re.compile(
    rf"^(?:(?P<scale>{_NUM})\s*\*\s*)?(?P<method>[A-Za-z_][\w-]*)\.(?P<metric>[A-Za-z_]\w*)"
    rf"(?:\s*(?P<sign>[+-])\s*(?P<offset>{_NUM}))?$"
)
_CONSTANT = re.compile(rf"^[+-]?{_NUM}$")
_CHECK = re.compile(r"^(?P<lhs>.+?)\s*(?P<op><=|>=|<|>)\s*(?P<rhs>.+)$")


@dataclass(frozen=True)
class Side:
    """``scale * method.metric + offset``, or the number ``offset`` when ``method`` is None."""

    method: str | None = None
    metric: str | None = None
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class Recipe:
    """Which runs a claim is about: config name, model, data set, epochs, method options."""

    config: str
    model: str
    dataset: str
    epochs: int
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.config} / {self.model} / {self.dataset} / {self.epochs} ep"


@dataclass(frozen=True)
class Claim:
    name: str
    check: str
    lhs: Side
    op: str
    rhs: Side
    recipe: Recipe
    tolerance: float = 0.0
    alpha: float | None = None
    min_seeds: int = 1
    source: str = ""


def parse_side(text: str, where: str) -> Side:
    text = text.strip()
    if _CONSTANT.match(text):
        return Side(offset=float(text))
    m = _SIDE.match(text)
    if not m:
        raise ConfigError(
            f"{where}: cannot read {text!r}; a side is a number or "
            "'[k *] method.metric [+|- c]', e.g. 'baseline.clean_error + 0.5'"
        )
    offset = float(m["offset"] or 0) * (-1 if m["sign"] == "-" else 1)
    return Side(m["method"], m["metric"], float(m["scale"] or 1), offset)


def parse_check(text: str, where: str) -> tuple[Side, str, Side]:
    """``A op B`` with A referring to a method (a number on the left is moved to the right)."""
    m = _CHECK.match(text.strip())
    if not m or re.search(r"[<>]", m["rhs"]):
        raise ConfigError(
            f"{where}: check {text!r} must be 'A < B' (or <=, >, >=): "
            "one operator between two sides"
        )
    lhs, op, rhs = parse_side(m["lhs"], where), m["op"], parse_side(m["rhs"], where)
    if lhs.method is None and rhs.method is None:
        raise ConfigError(f"{where}: check {text!r} compares two numbers; name a method.metric")
    if lhs.method is None:
        return rhs, _FLIP[op], lhs
    return lhs, op, rhs


def _known_methods() -> list[str]:
    from robench.augment import AUGMENTATIONS

    return AUGMENTATIONS.names()


def _recipe(raw: Any, where: str) -> Recipe:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: recipe must be a table, got {raw!r}")
    unknown = set(raw) - {*RECIPE_KEYS, "options"}
    if unknown:
        raise ConfigError(f"{where}: unknown recipe keys {sorted(unknown)}; use {RECIPE_KEYS}")
    missing = [k for k in RECIPE_KEYS if k not in raw]
    if missing:
        raise ConfigError(
            f"{where}: the recipe must name {', '.join(missing)} "
            "(in the claim or in [defaults.recipe])"
        )
    options = raw.get("options", {})
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise ConfigError(f"{where}: recipe.options must map methods to tables, got {options!r}")
    if not isinstance(raw["epochs"], int) or isinstance(raw["epochs"], bool):
        raise ConfigError(f"{where}: recipe.epochs must be an integer, got {raw['epochs']!r}")
    text = {k: raw[k] for k in ("config", "model", "dataset")}
    for key, value in text.items():
        if not isinstance(value, str):
            raise ConfigError(f"{where}: recipe.{key} must be a string, got {value!r}")
    return Recipe(**text, epochs=raw["epochs"], options=options)


def _number(raw: dict[str, Any], key: str, default: Any, where: str, lo: float = 0.0) -> Any:
    value = raw.get(key, default)
    ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    if not ok or (value is not None and value < lo):
        raise ConfigError(f"{where}: {key} must be a number >= {lo}, got {value!r}")
    return value


def _alpha(raw: dict[str, Any], where: str) -> float | None:
    value = _number(raw, "alpha", None, where)
    if value is not None and not 0 < value < 1:
        raise ConfigError(f"{where}: alpha must be between 0 and 1 (e.g. 0.05), got {value!r}")
    return value


def load_claims(path: str | Path) -> list[Claim]:
    """Parse and check a claims file; any mistake raises one ConfigError line naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"claims file {str(path)!r} not found")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML ({err})") from None
    if set(doc) - {"defaults", "claim"}:
        raise ConfigError(
            f"{path}: unknown top-level keys {sorted(set(doc) - {'defaults', 'claim'})}"
        )
    defaults = doc.get("defaults", {})
    if set(defaults) - DEFAULT_KEYS:
        raise ConfigError(f"{path}: unknown [defaults] keys {sorted(set(defaults) - DEFAULT_KEYS)}")
    raw_claims = doc.get("claim", [])
    if not isinstance(raw_claims, list) or not raw_claims:
        raise ConfigError(f"{path}: no claims; add [[claim]] tables with a 'check' key")
    methods = _known_methods()
    claims = []
    for i, raw in enumerate(raw_claims, 1):
        where = f"{path}: claim {i}"
        unknown = set(raw) - CLAIM_KEYS
        if unknown:
            close = difflib.get_close_matches(sorted(unknown)[0], CLAIM_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}{hint}")
        if not isinstance(raw.get("check"), str):
            raise ConfigError(f'{where}: needs check = "A < B" (a string)')
        lhs, op, rhs = parse_check(raw["check"], where)
        for side in (lhs, rhs):
            if side.method is not None and side.method not in methods:
                close = difflib.get_close_matches(side.method, methods, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{where}: unknown method {side.method!r}{hint}")
        merged = {**defaults.get("recipe", {}), **raw.get("recipe", {})}
        merged["options"] = {
            **defaults.get("recipe", {}).get("options", {}),
            **raw.get("recipe", {}).get("options", {}),
        }
        settings = {**defaults, **raw}
        claims.append(
            Claim(
                name=str(raw.get("name", raw["check"])),
                check=raw["check"],
                lhs=lhs,
                op=op,
                rhs=rhs,
                recipe=_recipe(merged, where),
                tolerance=_number(settings, "tolerance", 0.0, where),
                alpha=_alpha(settings, where),
                min_seeds=int(_number(settings, "min_seeds", 1, where, lo=1)),
                source=str(raw.get("source", "")),
            )
        )
    return claims


@dataclass
class _Evidence:
    """One side of a claim: the metric's per-seed values and, for one run, its examples."""

    values: np.ndarray
    examples: Examples | None = None


def _select(runs: pd.DataFrame, recipe: Recipe, method: str) -> tuple[pd.DataFrame, str]:
    """The runs of ``method`` under ``recipe``; empty with the reason when none (or ambiguous)."""
    if runs.empty:
        return runs, "no finished runs"
    of_recipe = runs[
        (runs["config_name"] == recipe.config)
        & (runs["model"] == recipe.model)
        & (runs["dataset"] == recipe.dataset)
        & (runs["epochs"] == recipe.epochs)
    ]
    if of_recipe.empty:
        here = "; ".join(sorted(runs["setting"].unique()))
        return of_recipe, f"no runs of recipe {recipe}; the results hold: {here}"
    wanted = recipe.options.get(method, {})
    chosen = of_recipe[of_recipe["method"] == method]
    chosen = chosen[chosen["augment"].map(lambda a: all(a.get(k) == v for k, v in wanted.items()))]
    if chosen.empty:
        pinned = f" with options {inline_options(wanted)}" if wanted else ""
        methods = ", ".join(sorted(of_recipe["method"].unique()))
        return chosen, f"no {method} runs{pinned} of this recipe (its methods: {methods})"
    if chosen["recipe"].nunique() > 1:
        augments = chosen.drop_duplicates("recipe")["augment"].tolist()
        keys = sorted({k for a in augments for k in a if a.get(k) != augments[0].get(k)})
        what = f"options {', '.join(keys)}" if keys else "config keys"
        return chosen.iloc[:0], (
            f"{method}: runs of {chosen['recipe'].nunique()} recipes match (they differ in {what});"
            f" pin them in recipe.options.{method} or the config"
        )
    return chosen, ""


def _evidence(
    runs: pd.DataFrame, recipe: Recipe, method: str, metric: str, results_dir: Path
) -> tuple[_Evidence | None, str]:
    """The values of ``method.metric`` under ``recipe`` (None and the reason when missing)."""
    chosen, why = _select(runs, recipe, method)
    if chosen.empty:
        return None, why
    if metric not in chosen or chosen[metric].isna().all():
        known = [c for c in runs.columns if c not in NOT_METRICS]
        close = difflib.get_close_matches(metric, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return None, f"the {method} runs have no {metric!r}{hint}"
    values = chosen[metric].dropna().to_numpy(dtype=float)
    examples = None
    if len(values) == 1:
        run = chosen[chosen[metric].notna()].iloc[0]
        found = run_examples(runs_root(results_dir) / run["run_id"], run["eval_data_hash"])
        examples = found.get(metric)
    return _Evidence(values, examples), ""


def _p_value(
    claim: Claim, a: _Evidence, b: _Evidence | None, threshold: float, alt: Alternative
) -> tuple[float, str]:
    """(p, name of the test) for H1: s_a A - s_b B < threshold (or >); NaN and why when none."""
    lhs, rhs = claim.lhs, claim.rhs
    na, nb = len(a.values), None if b is None else len(b.values)
    if na >= 2 and (nb is None or nb >= 2):
        other = None if b is None else rhs.scale * b.values
        name = "one-sample t (seeds)" if b is None else "Welch t (seeds)"
        return welch_p(lhs.scale * a.values, other, threshold=threshold, alternative=alt), name
    if na == 1 and nb in (None, 1):
        if a.examples is None or (b is not None and b.examples is None):
            return math.nan, "none: one seed and no per-example records for this metric"
        if b is not None and b.examples is not None and a.examples.key != b.examples.key:
            return math.nan, "none: the runs were evaluated on different examples"
        p = bootstrap_p(
            a.examples,
            None if b is None else b.examples,
            threshold=threshold,
            alternative=alt,
            scale_a=lhs.scale,
            scale_b=rhs.scale,
        )
        return p, "paired bootstrap (examples)" if b is not None else "bootstrap (examples)"
    return math.nan, f"none: {na} vs {nb} seeds (a t-test needs >= 2 on each side)"


def evaluate_claim(claim: Claim, runs: pd.DataFrame, results_dir: Path) -> dict[str, Any]:
    """One row of the claims table (see the module docstring for the rules)."""
    row: dict[str, Any] = {
        "status": NOT_ENOUGH_DATA,
        "name": claim.name,
        "claim": claim.check,
        "recipe": str(claim.recipe),
        "lhs": math.nan,
        "rhs": math.nan,
        "margin": math.nan,
        "p_value": math.nan,
        "test": "",
        "n": "",
        "note": "",
        "source": claim.source,
    }
    lhs_side, rhs_side = claim.lhs, claim.rhs
    a, why = _evidence(runs, claim.recipe, str(lhs_side.method), str(lhs_side.metric), results_dir)
    b = None
    if a is not None and rhs_side.method is not None:
        b, why = _evidence(runs, claim.recipe, rhs_side.method, str(rhs_side.metric), results_dir)
    if a is None or (rhs_side.method is not None and b is None):
        return row | {"note": why}
    row["n"] = str(len(a.values)) + ("" if b is None else f" vs {len(b.values)}")
    lhs = claim.lhs.scale * a.values.mean() + claim.lhs.offset
    rhs_mean = 0.0 if b is None else claim.rhs.scale * b.values.mean()
    rhs = rhs_mean + claim.rhs.offset
    less = claim.op in ("<", "<=")
    margin = (rhs + claim.tolerance - lhs) if less else (lhs - rhs + claim.tolerance)
    threshold = (
        claim.rhs.offset - claim.lhs.offset + (claim.tolerance if less else -claim.tolerance)
    )
    p, test = _p_value(claim, a, b, threshold, "less" if less else "greater")
    row |= {"lhs": lhs, "rhs": rhs, "margin": margin, "p_value": p, "test": test}
    fewest = min(len(a.values), len(b.values) if b is not None else len(a.values))
    holds = margin > 0 or (margin == 0 and claim.op in ("<=", ">="))
    if fewest < claim.min_seeds:
        return row | {"note": f"{fewest} seeds, the claim needs {claim.min_seeds}"}
    if not holds:
        return row | {"status": FAIL, "note": f"misses by {-margin:.3g}"}
    if claim.alpha is not None and math.isnan(p):
        return row | {"note": f"holds, but alpha is set and no test is possible ({test})"}
    if claim.alpha is not None and p >= claim.alpha:
        return row | {"note": f"holds, but not significant (p = {p:.3g} >= {claim.alpha})"}
    return row | {"status": PASS}


def known_values(runs: pd.DataFrame) -> list[str]:
    """The value names a claim may use (``*``: a wildcard): those the metric plugins declare,
    those the report derives, and any other value the runs hold (an undeclared plugin's)."""
    from robench.evaluation.base import declared_values

    held = [c for c in runs.columns if c not in NOT_METRICS]
    return list(dict.fromkeys([*declared_values(), *DERIVED_VALUES, *held]))


def check_metric_names(claims: list[Claim], runs: pd.DataFrame, path: str | Path) -> None:
    """Refuse a claim naming a value no metric provides, with a "did you mean"."""
    known = known_values(runs)
    n_declared = len(known_values(runs.iloc[:0, :0]))
    for i, claim in enumerate(claims, 1):
        for side in (claim.lhs, claim.rhs):
            metric = side.metric
            if metric is None or any(fnmatch.fnmatchcase(metric, k) for k in known):
                continue
            close = difflib.get_close_matches(metric, [k for k in known if "*" not in k], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{path}: claim {i}: unknown metric {side.method}.{metric}{hint}; the metrics "
                f"provide {', '.join(k for k in known[:n_declared] if '*' not in k)}, ..."
            )


def check_claims(path: str | Path, results_dir: str | Path = "results") -> pd.DataFrame:
    """The claims table: one row per claim with its status, values, margin and p-value."""
    claims = load_claims(path)
    if not Path(results_dir).is_dir():
        raise ConfigError(
            f"results folder {str(results_dir)!r} does not exist; pass --results-dir with the "
            "folder that holds runs/ (e.g. results, or a committed reference store)"
        )
    runs = gather_runs(results_dir)
    check_metric_names(claims, runs, path)
    return pd.DataFrame([evaluate_claim(c, runs, Path(results_dir)) for c in claims])


def claims_display(table: pd.DataFrame) -> pd.DataFrame:
    """The claims table as text for a terminal: values to 2 decimals, p to 3 digits."""

    def num(v: float, spec: str) -> str:
        return "" if math.isnan(v) else format(v, spec)

    out = table[["status", "claim", "recipe", "n"]].copy()
    for column in ("lhs", "rhs", "margin"):
        out[column] = table[column].map(lambda v: num(v, ".2f"))
    out["p"] = table["p_value"].map(lambda v: num(v, ".3g"))
    return out.assign(test=table["test"], note=table["note"])


def failed(table: pd.DataFrame, allow_missing: bool = False) -> pd.DataFrame:
    """The claims that fail: FAIL, and NOT-ENOUGH-DATA unless ``allow_missing``."""
    bad = {FAIL} if allow_missing else {FAIL, NOT_ENOUGH_DATA}
    return table[table["status"].isin(bad)]


def assert_claims(
    path: str | Path, results_dir: str | Path = "results", *, allow_missing: bool = False
) -> pd.DataFrame:
    """For a project's test suite: raise AssertionError listing every failing claim (a claim
    without enough data fails too, unless ``allow_missing``); returns the claims table."""
    table = check_claims(path, results_dir)
    bad = failed(table, allow_missing)
    if len(bad):
        lines = [f"{r.status}: {r.claim} [{r.recipe}] {r.note}" for r in bad.itertuples()]
        raise AssertionError(f"{len(bad)} of {len(table)} claims fail:\n" + "\n".join(lines))
    return table
