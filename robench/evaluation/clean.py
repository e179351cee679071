"""``clean``: top-1 error and negative log-likelihood on the clean test set."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from robench.data import ImageData
from robench.evaluation.base import (
    EXAMPLES,
    METRICS,
    EvalContext,
    MetricResult,
    PerExample,
    ValueInfo,
    predict_logits,
)


@METRICS.register("clean", description="clean test error (%) and NLL")
def clean(model: torch.nn.Module, data: ImageData, ctx: EvalContext) -> MetricResult:
    logits = predict_logits(model, data.images, ctx, desc="clean")
    probs = logits.softmax(1)
    confidence, pred = probs.max(1)
    correct = pred == data.labels
    nll = F.cross_entropy(logits, data.labels).item()
    return MetricResult(
        values={"clean_error": 100.0 * (1 - correct.float().mean().item()), "clean_nll": nll},
        records={
            "label": data.labels.numpy(),
            "pred": pred.numpy(),
            "confidence": confidence.numpy(),
        },
    )


#: the values ``clean`` returns
clean.values = {  # type: ignore[attr-defined]
    "clean_error": ValueInfo("Clean error", headline=True, ci=EXAMPLES),
    "clean_nll": ValueInfo("Clean negative log-likelihood", unit="nats", short="Clean NLL"),
}


def clean_per_example(
    records: Mapping[str, np.ndarray], table: Callable[[str], pd.DataFrame | None]
) -> dict[str, PerExample]:
    """Each test image right or wrong, from the saved predictions and labels."""
    if not {"pred", "label"} <= records.keys():
        return {}
    correct = (records["pred"] == records["label"]).astype(float)
    return {"clean_error": PerExample(correct, "all")}


clean.per_example = clean_per_example  # type: ignore[attr-defined]
