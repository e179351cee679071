"""The evaluator suite and its metric plugins, found by name in :data:`METRICS` (the built-in
metrics register at the first look-up)."""

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
