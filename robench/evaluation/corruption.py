"""``corruption``: error (and calibration) on CIFAR-C / ImageNet-C style corrupted test sets.

The corrupted set is generated in-house from the clean test set (cached by content; see
:mod:`robench.data.corrupted_sets`), read from an official CIFAR-10-C / CIFAR-100-C folder, or
streamed from an ImageNet-C style folder (``<corruption>/<severity>/<class>/<image>``).

Conventions (docs/metrics.md#corruption; Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261):
* ``corruption_error`` is the CIFAR convention of the AugMix/PixMix/IPMix papers: the unweighted
  mean of the errors over the corruptions x severities, with no baseline normalisation.
* ``mCE`` / relative mCE (the ImageNet convention) need a reference: :func:`mce` computes them
  against any reference run (``robench report`` uses the ``baseline`` run of the same recipe, or
  the run given with ``--mce-reference``), :func:`alexnet_mce` against AlexNet (Hendrycks &
  Dietterich 2019), the published ImageNet-C normalisation.
* ``corruption_rms_calibration_error`` is a harness convention (no released CIFAR reference):
  RMS calibration error per (corruption, severity), averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from robench.data.corruption_constants import BENCHMARK_CORRUPTIONS, SEVERITIES, get_constants
from robench.data.datasets import ImageData
from robench.data.folders import (
    FolderImages,
    corrupted_folder,
    is_corrupted_folder,
    read_class_folder,
)
from robench.errors import ConfigError, DataError
from robench.evaluation.base import (
    EXAMPLES,
    METRICS,
    EvalContext,
    MetricResult,
    PerExample,
    ValueInfo,
    predict_logits,
)
from robench.evaluation.calibration import confidence_and_correct
from robench.evaluation.functional import ALEXNET_ERRORS, alexnet_mce, rms_calibration_error
from robench.io import hash_arrays


def eval_subset(n_test: int, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` test images (all when 0), drawn evenly by a seeded permutation and kept in
    test order: the test set may be sorted by class, so the first ``n`` would be one class."""
    if n < 0:
        raise ConfigError(f"the number of images must be >= 0 (0 = all), got {n}")
    if n == 0 or n >= n_test:
        return np.arange(n_test)
    return np.sort(np.random.default_rng([seed, 7]).permutation(n_test)[:n])


#: the test image sides from which ``constants = "auto"`` generates with the Tiny-ImageNet-C
#: and the ImageNet-C table
TINY_MIN_SIZE = 64
IMAGENET_MIN_SIZE = 224
#: per constants table: the benchmark's name in results, and the generated set's folder name
GENERATED = {
    "cifar": ("cifar-c", "CIFAR-10-C"),
    "tiny": ("tiny-imagenet-c", "Tiny-ImageNet-C"),
    "imagenet": ("imagenet-c", "ImageNet-C"),
}


def resolve_constants(constants: str, image_size: int) -> str:
    """``"auto"``: the ImageNet-C table for images of at least 224 px, the Tiny-ImageNet-C one
    from 64 px, else the CIFAR-C one."""
    if constants == "auto":
        if image_size >= IMAGENET_MIN_SIZE:
            return "imagenet"
        return "tiny" if image_size >= TINY_MIN_SIZE else "cifar"
    return get_constants(constants).name


@METRICS.register("corruption", description="CIFAR-C / ImageNet-C corruption error, per corruption")
def corruption(
    model: torch.nn.Module,
    data: ImageData,
    ctx: EvalContext,
    *,
    corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    n_per_severity: int = 0,
    source: str = "generate",
    seed: int = 0,
    workers: int = 0,
    constants: str = "auto",
) -> MetricResult:
    """Error per (corruption, severity) on one of three sources:

    * ``"generate"`` (default): made from the clean test set with the ``constants`` table
      (``"auto"``: ``"imagenet"`` for test images of >= 224 px, ``"tiny"`` (Tiny-ImageNet-C)
      for >= 64 px, else ``"cifar"``) and cached;
    * the path of a CIFAR-10-C style folder (``<corruption>.npy`` + ``labels.npy``, test order);
    * the path of an ImageNet-C style folder (``<corruption>/<severity>/<class>/<image>``): class
      folders matched by name with the training classes, each image resized (shorter side) and
      centre-cropped to the test image size, a no-op on ImageNet-C's 224 px images.

    ``n_per_severity`` evaluates a seeded subset (0 = all, as the benchmarks define them);
    ``seed`` is also the corruption seed. On ImageNet-C (a folder of test images of >= 224 px,
    or generated with the ImageNet table) with all five severities, ``mce_alexnet`` is the
    AlexNet-normalised mCE; a folder of smaller images (Tiny-ImageNet-C at 64 px) gets none.
    """
    _check_source(source)
    root = None if source == "generate" else Path(source)
    on_folder = root is not None and is_corrupted_folder(root, corruptions[0])
    table_name = resolve_constants(constants, data.image_size) if root is None else ""
    if on_folder:  # named by its image size: a 64 px folder is Tiny-ImageNet-C, not ImageNet-C
        benchmark = GENERATED[resolve_constants("auto", data.image_size)][0]
    else:
        benchmark = GENERATED[table_name][0] if root is None else "cifar-c"
    if root is None:
        sets = _generated(
            data, ctx, corruptions, severities, n_per_severity, seed, workers, table_name
        )
    elif on_folder:
        sets = _from_folder(data, root, corruptions, severities, n_per_severity, seed)
    else:
        if n_per_severity:
            raise ConfigError("n_per_severity works with generated sets only (source = 'generate')")
        sets = _from_npy(data, root, corruptions, severities)
    rows, correct_sets, indices = [], [], []
    for name, severity, images, labels, index in sets:
        indices.append(index)
        logits = predict_logits(model, images, ctx, desc=f"{name} s{severity}")
        confidence, correct = confidence_and_correct(logits, labels)
        correct_sets.append(correct)
        rows.append(
            {
                "corruption": name,
                "severity": severity,
                "error": 100.0 * (1 - correct.mean()),
                "rms_calibration_error": 100.0 * rms_calibration_error(confidence, correct),
                "n": len(correct),
            }
        )
    table = pd.DataFrame(rows)
    per_corruption = table.groupby("corruption", sort=False)["error"].mean()
    values = {
        "corruption_error": float(table["error"].mean()),
        "corruption_rms_calibration_error": float(table["rms_calibration_error"].mean()),
        **{f"corruption_error_{name}": float(err) for name, err in per_corruption.items()},
    }
    referenced = set(corruptions) <= set(ALEXNET_ERRORS)  # not ImageNet-C-Bar's, say
    if benchmark == "imagenet-c" and sorted(severities) == list(SEVERITIES) and referenced:
        values["mce_alexnet"] = alexnet_mce(table, clean_error=np.nan)["mce"]
    settings = {"benchmark": benchmark, "source": source, "constants": table_name}
    records = {}
    if len({len(c) for c in correct_sets}) == 1:  # ImageNet-C folders may differ per set
        shape = (len(corruptions), len(severities), len(correct_sets[0]))
        records = {"correct": np.stack(correct_sets).reshape(shape), "index": indices[0]}
    return MetricResult(
        values=values,
        tables={"errors": table, "settings": pd.DataFrame([settings])},
        records=records,
    )


#: one evaluated set: corruption, severity, images (uint8 tensor or on disk), labels, test index
CorruptedSet = tuple[str, int, torch.Tensor | FolderImages, torch.Tensor, np.ndarray]


def _check_source(source: str = "generate", **_: Any) -> None:
    """A source that is not ``"generate"`` must be a folder (checked before training, too)."""
    if source != "generate" and not Path(source).is_dir():
        raise DataError(
            f"corruption source {source!r} is not a folder: give 'generate', a CIFAR-10-C folder "
            "(<corruption>.npy, labels.npy) or an ImageNet-C folder (<corruption>/<severity>/...)"
        )


corruption.validate = _check_source  # type: ignore[attr-defined]


def _generated(
    data: ImageData,
    ctx: EvalContext,
    corruptions: Sequence[str],
    severities: Sequence[int],
    n_per_severity: int,
    seed: int,
    workers: int,
    table_name: str,
) -> Iterator[CorruptedSet]:
    """Sets generated from the clean test set (cached by content, constants and seed)."""
    # the generators (OpenCV, SciPy) load only here: reading a metric's metadata needs none
    from robench.data.corrupted_sets import ensure_cifar_c, load_cifar_c

    index = eval_subset(len(data), n_per_severity, seed)
    labels = data.labels[index]
    folder = ensure_cifar_c(
        data.images[index].permute(0, 2, 3, 1).numpy(),
        labels.numpy(),
        corruptions=list(corruptions),
        severities=list(severities),
        seed=seed,
        workers=workers or None,
        progress=ctx.progress,
        cache_root=ctx.cache_dir / "corruptions",
        constants=table_name,
        dataset_name=GENERATED[table_name][1],
    )
    for name in corruptions:
        for severity in severities:
            images, _ = load_cifar_c(folder, name, severity=severity, expected_labels=labels)
            yield name, severity, torch.from_numpy(images).permute(0, 3, 1, 2), labels, index


def _from_npy(
    data: ImageData, root: Path, corruptions: Sequence[str], severities: Sequence[int]
) -> Iterator[CorruptedSet]:
    """An official CIFAR-10-C style folder, rows in test-set order."""
    from robench.data.corrupted_sets import load_cifar_c

    index = np.arange(len(data))
    for name in corruptions:
        for severity in severities:
            images, _ = load_cifar_c(root, name, severity=severity, expected_labels=data.labels)
            if images.shape[1:] != (data.image_size, data.image_size, 3):
                raise DataError(
                    f"{root / f'{name}.npy'} holds {images.shape[1]}x{images.shape[2]} images "
                    f"but the test set is {data.image_size}x{data.image_size}: wrong data set"
                )
            yield name, severity, torch.from_numpy(images).permute(0, 3, 1, 2), data.labels, index


def _from_folder(
    data: ImageData,
    root: Path,
    corruptions: Sequence[str],
    severities: Sequence[int],
    n_per_severity: int,
    seed: int,
) -> Iterator[CorruptedSet]:
    """An ImageNet-C style folder, streamed from disk at the test image size."""
    size = data.image_size
    workers = data.images.workers if isinstance(data.images, FolderImages) else 0
    for name in corruptions:
        for severity in severities:
            folder = corrupted_folder(root, name, severity)
            files, labels, _ = read_class_folder(folder, data.classes)
            index = eval_subset(len(files), n_per_severity, seed)
            images = FolderImages(files, size, size, workers).subset(index)
            yield name, severity, images, torch.from_numpy(labels[index]), index


#: the values ``corruption`` returns (``*``: a corruption's name)
corruption.values = {  # type: ignore[attr-defined]
    "corruption_error": ValueInfo(
        "Corruption error (mean over corruptions x severities)",
        headline=True,
        short="Corruption error",
        ci=EXAMPLES,
    ),
    "corruption_rms_calibration_error": ValueInfo("RMS calibration error under corruption"),
    "corruption_error_*": ValueInfo(
        "Error under one corruption (mean over severities)", ci=EXAMPLES
    ),
    "mce_alexnet": ValueInfo(
        "ImageNet-C mCE (AlexNet-normalised)",
        unit="% of AlexNet",
        headline=True,
        short="mCE (AlexNet)",
    ),
}


def corruption_per_example(
    records: Mapping[str, np.ndarray],
    table: Callable[[str], pd.DataFrame | None],
    *,
    value: str = "corruption_error",
    metric: str = "corruption",
) -> dict[str, PerExample]:
    """Each image's accuracy over the corruptions x severities (``records["correct"]``, (C, S,
    N)), so that a resample keeps the same images under every corruption, as the benchmark
    does; per corruption, its accuracy over the severities. Keyed by the evaluated images."""
    if "correct" not in records:
        return {}
    correct = records["correct"].astype(float)
    index = records.get("index", np.arange(correct.shape[-1]))
    examples = f"{metric}:{hash_arrays(index)}"
    out = {value: PerExample(correct.mean(axis=(0, 1)), examples)}
    errors = table("errors")
    if errors is not None:
        names = errors["corruption"].drop_duplicates().tolist()
        for c, name in enumerate(names[: correct.shape[0]]):
            out[f"{value}_{name}"] = PerExample(correct[c].mean(axis=0), examples)
    return out


corruption.per_example = corruption_per_example  # type: ignore[attr-defined]
