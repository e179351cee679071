"""Protocol checks for plugins, robench's own and third-party ones alike.

Each ``check_*`` runs a plugin the way robench will (trainer, evaluator suite, data loader) on a
few tiny inputs and raises ``AssertionError`` with a message naming the plugin and the broken
rule. They need no pytest, so a plugin's own test suite calls them as they are::

    from robench.testing import check_augmentation, check_metric

    def test_noisemix():
        check_augmentation("noisemix")             # by name: through the entry point
        check_augmentation(NoiseMix, options={"jsd": True})

The rules: outputs of the right shape, dtype and range; labels preserved (or valid soft targets
for mixing methods); the same seed gives the same result and every draw comes from the generator
passed in (the global numpy, torch and ``random`` states stay untouched); the input images, the
data and the model are never modified; plugins survive pickling (DataLoader workers get copies).
"""

from __future__ import annotations

import contextlib
import fnmatch
import inspect
import json
import math
import pickle
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from robench.augment.base import Augmentation, create_augmentation
from robench.data.datasets import DataIdentity, ImageData, check_same_classes, load_dataset
from robench.errors import ConfigError, RobenchError
from robench.evaluation.base import (
    EXAMPLES,
    METRICS,
    EvalContext,
    MetricResult,
    ValueInfo,
    value_infos,
)
from robench.evaluation.functional import percent_error
from robench.models import create_model

__all__ = [
    "check_augmentation",
    "check_dataset",
    "check_metric",
    "check_model",
    "tiny_data",
    "tiny_model",
    "toy_images",
]


def toy_images(n: int = 4, size: int = 32) -> np.ndarray:
    """``n`` distinct smooth uint8 (size, size, 3) pictures: gradients plus a bright square."""
    yy, xx = np.mgrid[0:size, 0:size] * (256 // size)
    base = np.stack([xx, yy, (xx + yy) // 2], axis=-1)
    base[size // 3 : size // 2, size // 3 : size // 2] = 255
    variants = [base, base[::-1], base[:, ::-1], 255 - base, base.transpose(1, 0, 2)]
    return np.stack([variants[i % len(variants)] for i in range(n)]).clip(0, 255).astype(np.uint8)


def tiny_data(n: int = 40, num_classes: int = 4, size: int = 32) -> ImageData:
    """A learnable toy test set in memory: class k is a noisy image of brightness ~ k."""
    labels = np.arange(n) % num_classes
    noise = np.random.default_rng(0).integers(0, 40, (n, 3, size, size))
    images = (30 + 200 * labels[:, None, None, None] // max(num_classes - 1, 1) + noise).clip(
        0, 255
    )
    images, labels = images.astype(np.uint8), labels.astype(np.int64)
    identity = DataIdentity("toy", "test", n, "toy", "robench.testing.tiny_data")
    classes = [f"class{k}" for k in range(num_classes)]
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels), classes, identity)


def tiny_model(num_classes: int = 4) -> torch.nn.Module:
    """A small fixed convolutional net taking [0, 1] input, built without touching global RNGs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(8, num_classes),
        ).eval()


# --- augmentations -----------------------------------------------------------------------------


def check_augmentation(
    plugin: str | type[Augmentation] | Augmentation,
    *,
    options: dict[str, Any] | None = None,
    num_classes: int = 10,
    image_size: int = 32,
    preserves_labels: bool = True,
) -> Augmentation:
    """Check an augmentation plugin (a registered name, a class or an instance); returns it.

    ``preserves_labels=False`` is for mixing methods (CutMix, Mixup) whose batch stage may return
    soft targets ``(B, C)``; those must then be probability rows. Everything else must hand the
    labels back unchanged.
    """
    aug = _build_augmentation(plugin, options or {}, num_classes, image_size)
    what = f"augmentation {_label(plugin)}"
    _require(isinstance(aug.num_views, int) and aug.num_views >= 1, what, "num_views >= 1")
    images = toy_images(4, image_size)
    labels = torch.tensor([3, 1, 4, 1]) % num_classes
    with _global_rng_untouched(what):
        x, targets = _augment(aug, images, labels, 0, what, preserves_labels, num_classes)
    again = _augment(aug, images, labels, 0, what, preserves_labels, num_classes)
    _require(
        torch.equal(x, again[0]) and torch.equal(targets, again[1]),
        what,
        "the same seed must give the same output (draw only from the rng argument)",
    )
    others = [
        _augment(aug, images, labels, seed, what, preserves_labels, num_classes)[0]
        for seed in (1, 2, 3)
    ]
    _require(
        any(not torch.equal(x, other) for other in others),
        what,
        "different seeds gave the same output: is the rng argument used?",
    )
    with _global_rng_untouched(what):
        _check_extra_loss(aug, len(labels), num_classes, what)
    described = aug.describe()
    _require(isinstance(described, dict), what, "describe() must return a dict")
    try:
        json.dumps(described)
    except TypeError as err:
        raise AssertionError(f"{what}: describe() must be JSON-serialisable ({err})") from None
    _require(
        described.get("num_views") == aug.num_views,
        what,
        f"describe()['num_views'] is {described.get('num_views')!r}, not {aug.num_views}",
    )
    copy = pickle.loads(pickle.dumps(aug))  # what DataLoader workers get
    from_copy, _ = _augment(copy, images, labels, 0, what, preserves_labels, num_classes)
    _require(torch.equal(x, from_copy), what, "a pickled copy must give the same output")
    return aug


def _build_augmentation(
    plugin: str | type[Augmentation] | Augmentation,
    options: dict[str, Any],
    num_classes: int,
    image_size: int,
) -> Augmentation:
    if isinstance(plugin, Augmentation):
        return plugin
    if isinstance(plugin, str):

        def build(**extra: Any) -> Augmentation:
            return create_augmentation(
                plugin, num_classes=num_classes, image_size=image_size, **options, **extra
            )
    else:

        def build(**extra: Any) -> Augmentation:
            return plugin(num_classes=num_classes, image_size=image_size, **options, **extra)

    aug = build()
    what = f"augmentation {_label(plugin)}"
    _require(isinstance(aug, Augmentation), what, "must be an Augmentation subclass")
    try:
        build(surely_not_an_option=1)
    except (TypeError, ConfigError):
        pass
    else:
        raise AssertionError(f"{what}: an unknown option must be refused (TypeError/ConfigError)")
    return aug


def _augment(
    aug: Augmentation,
    images: np.ndarray,
    labels: torch.Tensor,
    seed: int,
    what: str,
    preserves_labels: bool,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainer's path: per-sample stage (views stacked view-major), then the batch stage."""
    b, size = len(images), images.shape[1]
    if aug.has_sample:
        outs = []
        for i, image in enumerate(images):
            before = image.copy()
            out = aug.sample(image, np.random.default_rng([seed, i]))
            _require(np.array_equal(image, before), what, "sample() modified its input image")
            _require(isinstance(out, np.ndarray), what, f"sample() returned {type(out).__name__}")
            want = (aug.num_views, 3, size, size)
            _require(out.shape == want, what, f"sample() gave shape {out.shape}, expected {want}")
            _require(out.dtype == np.float32, what, f"sample() gave {out.dtype}, expected float32")
            _check_range(torch.from_numpy(out), what, "sample()")
            outs.append(out)
        x = torch.from_numpy(np.stack(outs)).transpose(0, 1).reshape(-1, 3, size, size)
    else:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    y = labels.clone()
    if not aug.has_batch:
        return x, y
    x, targets = aug.batch(x, y, np.random.default_rng([seed, b]))
    _require(torch.equal(y, labels), what, "batch() modified the labels in place")
    want = (aug.num_views * b, 3, size, size)
    _require(isinstance(x, torch.Tensor), what, f"batch() returned {type(x).__name__} images")
    _require(tuple(x.shape) == want, what, f"batch() gave shape {tuple(x.shape)}, expected {want}")
    _require(x.is_floating_point(), what, f"batch() gave {x.dtype} images, expected float")
    _check_range(x, what, "batch()")
    if not targets.is_floating_point() or preserves_labels:
        _require(
            torch.equal(targets, labels),
            what,
            f"labels changed: got {targets.tolist()}, expected {labels.tolist()}",
        )
    else:
        _require(
            tuple(targets.shape) == (b, num_classes)
            and bool((targets >= 0).all())
            and torch.allclose(targets.sum(1), torch.ones(b), atol=1e-5),
            what,
            f"soft targets must be ({b}, {num_classes}) rows of probabilities",
        )
    return x, targets


def _check_range(x: torch.Tensor, what: str, stage: str) -> None:
    _require(bool(torch.isfinite(x).all()), what, f"{stage} output has NaN or inf")
    low, high = float(x.min()), float(x.max())
    _require(
        low >= -1e-6 and high <= 1 + 1e-6,
        what,
        f"{stage} output spans [{low:.3f}, {high:.3f}], expected within [0, 1]",
    )


def _check_extra_loss(aug: Augmentation, b: int, num_classes: int, what: str) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = [
        torch.randn(b, num_classes, generator=gen).requires_grad_() for _ in range(aug.num_views)
    ]
    loss = aug.extra_loss(logits)
    if loss is None:
        return
    _require(
        isinstance(loss, torch.Tensor) and loss.ndim == 0 and bool(torch.isfinite(loss)),
        what,
        "extra_loss() must return None or a finite scalar tensor",
    )
    _require(loss.requires_grad, what, "extra_loss() must stay differentiable in the logits")


# --- metrics -----------------------------------------------------------------------------------


def check_metric(
    metric: str | Callable[..., MetricResult],
    *,
    options: dict[str, Any] | None = None,
    model: torch.nn.Module | None = None,
    data: ImageData | None = None,
) -> MetricResult:
    """Check a metric plugin (a registered name or the callable) on a tiny model; returns its
    result.

    Runs it twice with the same seed (the values must agree) and checks the result's types,
    that the values are finite numbers and among those it declares in ``metric.values`` (when it
    does), that it returns one of its declared headline values, that values declared with
    ``ci="examples"`` come back from ``metric.per_example``, and that neither the model nor the
    data changed.
    """
    fn = METRICS.get(metric) if isinstance(metric, str) else metric
    what = f"metric {_label(metric)}"
    options = options or {}
    data = data or tiny_data()
    model = model or tiny_model(data.num_classes)
    try:
        inspect.signature(fn).bind(model, data, EvalContext(), **options)
    except TypeError as err:
        raise AssertionError(f"{what}: must accept (model, data, ctx, **options): {err}") from None
    params = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = data.images.clone(), data.labels.clone()
    with tempfile.TemporaryDirectory() as cache, _global_rng_untouched(what):
        ctx = EvalContext(batch_size=16, seed=0, cache_dir=Path(cache), progress=False)
        first = fn(model, data, ctx, **options)
        second = fn(model, data, ctx, **options)
    _require(isinstance(first, MetricResult), what, f"returned {type(first).__name__}")
    _require(bool(first.values), what, "returned no values")
    for name, value in first.values.items():
        _require(isinstance(name, str), what, f"value name {name!r} is not a str")
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        )
        _require(number, what, f"value {name!r} is {type(value).__name__}, not a number")
        _require(math.isfinite(float(value)), what, f"value {name!r} is {value}")
    _require(
        first.values == second.values,
        what,
        f"two runs with seed 0 disagree: {first.values} vs {second.values}",
    )
    for name, table in first.tables.items():
        _require(isinstance(table, pd.DataFrame), what, f"table {name!r} is not a DataFrame")
    for name, record in first.records.items():
        _require(isinstance(record, np.ndarray), what, f"record {name!r} is not a numpy array")
    _require(
        torch.equal(data.images, images) and torch.equal(data.labels, labels),
        what,
        "modified the test data",
    )
    state = model.state_dict()
    _require(all(torch.equal(state[k], v) for k, v in params.items()), what, "modified the model")
    if getattr(fn, "values", None) is not None:
        try:
            infos = value_infos(fn)
        except (TypeError, ValueError) as err:
            raise AssertionError(f"{what}: malformed metric.values ({err})") from None
        for name in first.values:
            _require(
                any(fnmatch.fnmatchcase(name, pattern) for pattern in infos),
                what,
                f"value {name!r} is not among its declared values {tuple(infos)}",
            )
        headline = [name for name, info in infos.items() if info.headline]
        _require(  # not each: some are conditional (the AlexNet mCE is ImageNet-C's only)
            not headline or any(name in first.values for name in headline),
            what,
            f"returns none of its headline values {tuple(headline)}",
        )
        _check_per_example(fn, first, infos, what)
    return first


def _check_per_example(
    fn: Callable[..., MetricResult], result: MetricResult, infos: dict[str, ValueInfo], what: str
) -> None:
    """Values declared ``ci="examples"`` come back from ``metric.per_example`` as outcomes whose
    percent error is the value itself."""
    resampled = [
        name
        for name in result.values
        if any(fnmatch.fnmatchcase(name, p) and i.ci == EXAMPLES for p, i in infos.items())
    ]
    if not resampled:
        return
    per_example = getattr(fn, "per_example", None)
    _require(
        callable(per_example),
        what,
        f"declares {resampled[0]!r} with ci='examples' but has no metric.per_example",
    )
    outcomes = per_example(result.records, result.tables.get)
    for name in resampled:
        _require(name in outcomes, what, f"metric.per_example gives no outcomes for {name!r}")
        error = percent_error(outcomes[name].correct)
        _require(
            math.isclose(error, result.values[name], abs_tol=1e-4),
            what,
            f"metric.per_example's outcomes give {name} = {error}, not {result.values[name]}",
        )


# --- data sets and models ----------------------------------------------------------------------


def check_dataset(spec: str, *, root: str | Path | None = None) -> dict[str, ImageData]:
    """Check a data-set spec (e.g. a plugin's ``"name:arg"``): both splits load, twice the same,
    with the same classes; returns them by split."""
    what = f"data set {spec!r}"
    out = {}
    for split in ("train", "test"):
        try:
            data = load_dataset(spec, split, root=root, progress=False)
            again = load_dataset(spec, split, root=root, progress=False)
        except RobenchError as err:
            raise AssertionError(f"{what}: {err}") from None
        _require(
            data.identity.content_hash == again.identity.content_hash,
            what,
            f"two loads of {split} differ: a loader must be deterministic",
        )
        _require(data.num_classes >= 2, what, f"{split} has {data.num_classes} class names")
        out[split] = data
    try:
        check_same_classes(out["train"], out["test"])
    except RobenchError as err:
        raise AssertionError(f"{what}: {err}") from None
    return out


def check_model(name: str, *, num_classes: int = 10, image_size: int = 32) -> torch.nn.Module:
    """Check a timm model name robench can train: same seed same weights, logits of the right
    shape for [0, 1] input; returns the model."""
    what = f"model {name!r}"
    with torch.random.fork_rng(devices=[]):
        try:
            torch.manual_seed(0)
            model = create_model(name, num_classes)
            torch.manual_seed(0)
            twin = create_model(name, num_classes)
        except RobenchError as err:
            raise AssertionError(f"{what}: {err}") from None
        x = torch.rand(2, 3, image_size, image_size)
    same = all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), twin.state_dict().values(), strict=True)
    )
    _require(same, what, "the same torch seed must give the same initial weights")
    with torch.no_grad():
        logits = model.eval()(x)
    _require(
        tuple(logits.shape) == (2, num_classes),
        what,
        f"logits of shape {tuple(logits.shape)}, expected (2, {num_classes})",
    )
    _require(bool(torch.isfinite(logits).all()), what, "logits have NaN or inf")
    return model


# --- helpers -----------------------------------------------------------------------------------


def _require(ok: bool, what: str, message: str) -> None:
    if not ok:
        raise AssertionError(f"{what}: {message}")


def _label(plugin: object) -> str:
    if isinstance(plugin, str):
        return repr(plugin)
    name = getattr(plugin, "__qualname__", None) or type(plugin).__qualname__
    return repr(name)


@contextlib.contextmanager
def _global_rng_untouched(what: str) -> Iterator[None]:
    """Fail if the body draws from (or reseeds) numpy's, torch's or Python's global RNG."""
    np_state, torch_state, py_state = (
        np.random.get_state(),
        torch.get_rng_state(),
        random.getstate(),
    )
    yield
    same_np = all(
        np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
        for a, b in zip(np_state, np.random.get_state(), strict=True)
    )
    _require(
        same_np
        and torch.equal(torch_state, torch.get_rng_state())
        and py_state == random.getstate(),
        what,
        "used a global random generator (numpy, torch or random): draw only from the rng "
        "argument, or a torch.Generator seeded from ctx.seed",
    )
