"""robench: robustness benchmarking for image classifiers.

The short public API (docs/python-api.md)::

    import robench
    run_dir = robench.train(robench.load_config("baselines/quick.toml"))
    model = robench.load_model("wrn_40_2", checkpoint="model_best.pth.tar")   # trained elsewhere
    results = robench.evaluate(model, data, ["clean"], save_to="results", label="augmix")
    table, csv_path = robench.report("results")

Importing robench registers its CIFAR architectures in timm's registry
(``timm.create_model("wrn_40_2", num_classes=10)``), its augmentation and metric plugins, and
those that other installed packages declare as entry points (:mod:`robench.plugins`).
"""

from robench import models  # noqa: F401  (registers the CIFAR architectures in timm)
from robench.augment import AUGMENTATIONS, create_augmentation
from robench.config import Config, load_config
from robench.data import ImageData, load_dataset
from robench.evaluation import METRICS, EvalContext
from robench.models import Normalized
from robench.models.external import load_model
from robench.pipeline import evaluate, evaluate_run, train
from robench.plugins import discover
from robench.reporting import report

__version__ = "0.1.0"

__all__ = [
    "AUGMENTATIONS",
    "METRICS",
    "Config",
    "EvalContext",
    "ImageData",
    "Normalized",
    "create_augmentation",
    "evaluate",
    "evaluate_run",
    "load_config",
    "load_dataset",
    "load_model",
    "report",
    "train",
]

discover()  # third-party plugins; never raises (broken ones are listed by `robench list`)
