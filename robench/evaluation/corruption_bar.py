"""``corruption_bar``: CIFAR-10-C-Bar (and ImageNet-C-Bar) error, read from the official folder.

C-Bar (Mintun et al. 2021, ``facebookresearch/augmentation-corruption``) holds 10 corruptions
chosen to be unlike CIFAR-C's, in CIFAR-10-C's layout (``<name>.npy``, 5 severities x the test
set, severity-major, ``labels.npy``); the IPMix paper reports it (arXiv:2310.04780 v5, Table
13). Its generator is not reimplemented here (its ``--seed`` is never used, so it is not
reproducible): the folder comes from it.
The metric is the corruption metric on that folder, under names of its own, so that a run
keeps both its CIFAR-C and its C-Bar numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from robench.data.corruption_constants import SEVERITIES
from robench.data.datasets import ImageData
from robench.errors import DataError
from robench.evaluation.base import EXAMPLES, METRICS, EvalContext, MetricResult, ValueInfo
from robench.evaluation.corruption import corruption, corruption_per_example

#: the 10 CIFAR-10-C-Bar corruptions, spelt as their files are (``cifar10_c_bar.csv``)
CBAR_CORRUPTIONS = (
    "blue_noise_sample",
    "brownish_noise",
    "checkerboard_cutout",
    "inverse_sparkles",
    "pinch_and_twirl",
    "ripple",
    "circular_motion_blur",
    "lines",
    "sparkles",
    "transverse_chromatic_abberation",
)
#: the 10 ImageNet-C-Bar corruptions, its folder names (``imagenet_c_bar.csv``)
IMAGENET_CBAR_CORRUPTIONS = (
    "caustic_refraction",
    "inverse_sparkles",
    "sparkles",
    "perlin_noise",
    "blue_noise_sample",
    "plasma_noise",
    "checkerboard_cutout",
    "cocentric_sine_waves",
    "single_frequency_greyscale",
    "brownish_noise",
)


@METRICS.register(
    "corruption_bar", description="CIFAR-10-C-Bar error from its folder (10 corruptions x 5)"
)
def corruption_bar(
    model: torch.nn.Module,
    data: ImageData,
    ctx: EvalContext,
    *,
    source: str,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
) -> MetricResult:
    """``source``: the C-Bar folder, ``CIFAR-10-C-Bar/`` (``<name>.npy`` + ``labels.npy``) or
    ImageNet-C-Bar (``<name>/<severity>/<class>/<image>``, read as ImageNet-C); ``corruptions``
    defaults to the 10 of whichever it is. Values: ``cbar_error`` (the plain mean over
    corruptions x severities, as for CIFAR-C), ``cbar_error_<name>``,
    ``cbar_rms_calibration_error``."""
    _check_source(source)
    if corruptions is None:
        in_folders = any((Path(source) / name).is_dir() for name in IMAGENET_CBAR_CORRUPTIONS)
        corruptions = IMAGENET_CBAR_CORRUPTIONS if in_folders else CBAR_CORRUPTIONS
    result = corruption(
        model, data, ctx, corruptions=corruptions, severities=severities, source=source
    )
    values = {
        key.replace("corruption_", "cbar_", 1): value
        for key, value in result.values.items()
        if key.startswith("corruption_")  # not the AlexNet mCE: C-Bar has no AlexNet reference
    }
    settings = result.tables["settings"].assign(benchmark=lambda t: t["benchmark"] + "-bar")
    tables: dict[str, pd.DataFrame] = result.tables | {"settings": settings}
    return MetricResult(values=values, tables=tables, records=result.records)


def _check_source(source: str, **_: Any) -> None:
    """``source`` must be a folder (checked before training, too)."""
    if not Path(source).is_dir():
        raise DataError(
            f"corruption_bar source {source!r} is not a folder: expected a CIFAR-10-C-Bar folder "
            "(<corruption>.npy, labels.npy) made by facebookresearch/augmentation-corruption"
        )


corruption_bar.validate = _check_source  # type: ignore[attr-defined]

#: the values ``corruption_bar`` returns (``*``: a corruption's name)
corruption_bar.values = {  # type: ignore[attr-defined]
    "cbar_error": ValueInfo(
        "C-Bar corruption error (mean over corruptions x severities)",
        headline=True,
        short="C-Bar error",
        ci=EXAMPLES,
    ),
    "cbar_rms_calibration_error": ValueInfo("RMS calibration error under C-Bar corruptions"),
    "cbar_error_*": ValueInfo("Error under one C-Bar corruption", ci=EXAMPLES),
}

corruption_bar.per_example = functools.partial(  # type: ignore[attr-defined]
    corruption_per_example, value="cbar_error", metric="corruption_bar"
)
