"""The evaluator suite: run a list of metric plugins on one model and collect their results."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from robench.config import ALL_METRICS
from robench.console import bar, say
from robench.data import ImageData
from robench.errors import ConfigError
from robench.evaluation.base import METRICS, EvalContext, Metric, MetricResult

#: what ``robench evaluate`` runs when no list is given: the whole suite
DEFAULT_METRICS = tuple(ALL_METRICS)


def check_metrics(metrics: Sequence[str], options: dict[str, dict[str, Any]]) -> None:
    """Unknown metric names and options, and options a metric's ``validate`` refuses (a
    missing benchmark folder), fail here, before any work (or training) is done."""
    for name in [*metrics, *options]:
        metric = METRICS.get(name)
        given = options.get(name, {})
        if not isinstance(given, dict):
            raise ConfigError(f"evaluate.options.{name} must be a table, got {given!r}")
        try:
            inspect.signature(metric).bind(None, None, None, **given)
        except TypeError as err:
            raise ConfigError(f"evaluate.options.{name}: {err}") from None
        _check_types(name, metric, given)
        validate = getattr(metric, "validate", None)
        if validate is not None and name in metrics:
            validate(**options.get(name, {}))


#: what an option must be, by the type of its default value
_KINDS = (
    (bool, (bool,), "true or false"),
    (int, (int,), "an integer"),
    (float, (int, float), "a number"),
    (str, (str,), "a string"),
    (list | tuple, (list, tuple), "a list"),
)


def _check_types(name: str, metric: Metric, given: dict[str, Any]) -> None:
    """An option of the wrong kind (``steps = "x"``) is refused by the kind of its default."""
    for key, param in inspect.signature(metric).parameters.items():
        if key not in given or param.default in (inspect.Parameter.empty, None):
            continue
        value = given[key]
        for default_type, accepted, what in _KINDS:
            if isinstance(param.default, default_type):
                ok = isinstance(value, accepted) and not (
                    isinstance(value, bool) and default_type is not bool
                )
                if not ok:
                    raise ConfigError(
                        f"evaluate.options.{name}.{key} must be {what}, got {value!r}"
                    )
                break


def evaluate(
    model: torch.nn.Module,
    data: ImageData,
    metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS,
    *,
    ctx: EvalContext | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    on_result: Callable[[str, MetricResult], None] | None = None,
) -> dict[str, MetricResult]:
    """Evaluate ``model`` (float input in [0, 1]) on ``data`` with each named metric plugin.

    ``options`` maps a metric name to its keyword options, e.g. ``{"pgd": {"steps": 10}}``.
    ``on_result(name, result)`` is called as each metric finishes (to save it at once, so an
    interrupted evaluation keeps what it finished).
    """
    ctx = ctx or EvalContext()
    options = options or {}
    check_metrics(metrics, options)
    results: dict[str, MetricResult] = {}
    bad = [
        k for k, v in model.state_dict().items() if v.is_floating_point() and not v.isfinite().all()
    ]
    if bad:
        raise ConfigError(
            f"the model holds NaN/inf weights in {len(bad)} tensors (e.g. {bad[0]}): its "
            "training diverged; retrain it (lower train.lr) instead of evaluating it"
        )
    model = model.to(ctx.device).eval()
    for name in bar(metrics, progress=ctx.progress and len(metrics) > 1, desc="evaluate"):
        metric = METRICS.get(name)
        start = time.perf_counter()
        result = metric(model, data, ctx, **options.get(name, {}))
        result.seconds = time.perf_counter() - start
        results[name] = result
        say(f"{name}: {_headline(result)} ({result.seconds:.1f} s)", ctx.progress)
        if on_result is not None:
            on_result(name, result)
    return results


def _headline(result: MetricResult) -> str:
    """The first two values of a result, for its one-line summary."""
    return ", ".join(f"{k} {v:.2f}" for k, v in list(result.values.items())[:2])
