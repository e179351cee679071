"""robench: robustness benchmarking for image classifiers.

The short public API (docs/python-api.md)::

    import robench
    run_dir = robench.train(robench.load_config("baselines/quick.toml"))
    model = robench.load_model("wrn_40_2", checkpoint="model_best.pth.tar")   # trained elsewhere
    results = robench.evaluate(model, data, ["clean"], save_to="results", label="augmix")
    table, csv_path = robench.report("results")

``import robench`` itself is light: torch, timm and the stages load when a name of the API is
first used, so ``robench --help`` answers at once. Importing :mod:`robench.models` (which every
model-creating call does) registers the CIFAR architectures in timm's registry
(``timm.create_model("wrn_40_2", num_classes=10)``); the plugins that other installed packages
declare as entry points (:mod:`robench.plugins`) are registered before the first look-up in any
registry.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from robench.registry import Registry, load_name

__version__ = "0.1.0"

#: the public API: each name and the module that defines it (imported on first use)
_API = {
    "AUGMENTATIONS": "robench.augment",
    "create_augmentation": "robench.augment",
    "Config": "robench.config",
    "load_config": "robench.config",
    "ImageData": "robench.data",
    "load_dataset": "robench.data",
    "METRICS": "robench.evaluation",
    "EvalContext": "robench.evaluation",
    "Normalized": "robench.models",
    "load_model": "robench.models.external",
    "evaluate": "robench.pipeline",
    "evaluate_run": "robench.pipeline",
    "train": "robench.pipeline",
    "report": "robench.reporting",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    """The public API on first use; a subpackage (``robench.reporting``) even when no one has
    imported it yet."""
    if name not in _API:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module 'robench' has no attribute {name!r}")
        return importlib.import_module(f"{__name__}.{name}")
    return load_name(globals(), _API, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


def _discover_plugins() -> None:
    """Third-party plugins; never raises (broken ones are listed by ``robench list``)."""
    from robench.plugins import discover

    discover()


Registry.before_first_lookup = _discover_plugins
