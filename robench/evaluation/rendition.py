"""``rendition``: error on an ImageNet-R style folder, ``<root>/<class>/<image>``.

ImageNet-R holds renditions (art, cartoons, sketches, ...) of 200 of the 1000 ImageNet classes. As
in its authors' and IPMix's evaluation, a prediction is the argmax over the logits of the classes
the folder holds (the 200-class logit mask), so a model is not wrong for naming a class that the
set cannot contain. Class folders are matched by name with the training classes (WordNet ids for
ImageNet). Images are read as the clean test set is: Resize + CenterCrop at the test image size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from robench.data.datasets import ImageData
from robench.data.folders import CROP_PCT, FolderImages, eval_resize, read_class_folder
from robench.errors import DataError
from robench.evaluation.base import METRICS, EvalContext, MetricResult, ValueInfo, predict_logits
from robench.evaluation.calibration import confidence_and_correct, rms_calibration_error
from robench.evaluation.corruption import eval_subset


@METRICS.register(
    "rendition", description="ImageNet-R style folder: error with logits masked to its classes"
)
def rendition(
    model: torch.nn.Module,
    data: ImageData,
    ctx: EvalContext,
    *,
    source: str,
    n: int = 0,
    seed: int = 0,
    mask: bool = True,
) -> MetricResult:
    """``source``: the ``<class>/<image>`` folder; ``n``: a seeded subset (0 = all);
    ``mask = false`` predicts among all training classes instead."""
    _check_source(source)
    root = Path(source)
    files, labels, present = read_class_folder(root, data.classes)
    index = eval_subset(len(files), n, seed)
    if isinstance(data.images, FolderImages):  # the test set's own resize and workers
        resize, workers = data.images.resize, data.images.workers
    else:
        resize, workers = eval_resize(data.image_size, CROP_PCT), 0
    images = FolderImages(files, data.image_size, resize, workers).subset(index)
    logits = predict_logits(model, images, ctx, desc="rendition")
    classes = np.asarray(present if mask else range(data.num_classes))
    position = np.full(data.num_classes, -1)
    position[classes] = np.arange(len(classes))
    # labels as positions among the kept logits
    target = torch.from_numpy(position[labels[index]])
    confidence, correct = confidence_and_correct(logits[:, torch.from_numpy(classes)], target)
    return MetricResult(
        values={
            "rendition_error": 100.0 * (1 - correct.mean()),
            "rendition_rms_calibration_error": 100.0 * rms_calibration_error(confidence, correct),
        },
        records={"correct": correct, "confidence": confidence, "index": index},
    )


def _check_source(source: str, **_: Any) -> None:
    """``source`` must be a folder (checked before training, too)."""
    if not Path(source).is_dir():
        raise DataError(f"rendition source {source!r} is not a folder: expected <class>/<image>")


rendition.validate = _check_source  # type: ignore[attr-defined]

#: the values ``rendition`` returns
rendition.values = {  # type: ignore[attr-defined]
    "rendition_error": ValueInfo(
        "ImageNet-R error (200-class mask)", headline=True, short="ImageNet-R error"
    ),
    "rendition_rms_calibration_error": ValueInfo("RMS calibration error on ImageNet-R"),
}
