"""The evaluator suite and its metric plugins, found by name in :data:`METRICS`."""

from robench.evaluation import (  # noqa: F401  (importing registers the built-in metrics)
    adversarial,
    calibration,
    clean,
    corruption,
    corruption_bar,
    flip,
    ood,
    rendition,
)
from robench.evaluation.base import METRICS, EvalContext, MetricResult
from robench.evaluation.suite import DEFAULT_METRICS, check_metrics, evaluate

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "EvalContext",
    "MetricResult",
    "check_metrics",
    "evaluate",
]
