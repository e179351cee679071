"""OOD detection: AUROC, AUPR and FPR at 95 % TPR, outlier-exposure conventions.

OOD images are the positive class and the anomaly score is the negated in-distribution score
(MSP by default, as OE's ``get_measures``); AUPR is therefore "AUPR-Out" and depends on the
OOD:ID ratio (OE: 2,000 per set against 10,000 test images). FPR95 is the fraction of
in-distribution images flagged at the threshold whose OOD recall is *closest* to 95 %
(``hendrycks/outlier-exposure`` ``utils/display_results.py``), not the first threshold reaching it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from robench.data.datasets import ImageData
from robench.errors import ConfigError, DataError
from robench.evaluation.base import METRICS, EvalContext, MetricResult, ValueInfo, predict_logits
from robench.evaluation.functional import ood_measures
from robench.io import derive_seed

SCORES = ("msp", "energy", "max_logit")
MEASURES = ("auroc", "aupr", "fpr95")
#: the in-distribution data set name -> its near-OOD partner, tried when no ``sets`` are given
OTHER_CIFAR = {"cifar10": "cifar100", "cifar10-jpeg": "cifar100", "cifar100": "cifar10"}


def ood_score(logits: torch.Tensor, score: str = "msp") -> np.ndarray:
    """Per-example in-distribution score, higher = more in-distribution (float64).

    ``msp``: max softmax probability; ``energy``: logsumexp of the logits (the negative free
    energy at T = 1, Liu et al.); ``max_logit``: the largest logit (Hendrycks et al.).
    """
    logits = logits.double()
    if score == "msp":
        return logits.softmax(1).amax(1).numpy()
    if score == "energy":
        return logits.logsumexp(1).numpy()
    if score == "max_logit":
        return logits.amax(1).numpy()
    raise ValueError(f"score must be one of {SCORES}, got {score!r}")


@METRICS.register("ood", description="OOD detection AUROC/AUPR/FPR95 (MSP) vs synthetic sets")
def ood(
    model: torch.nn.Module,
    data: ImageData,
    ctx: EvalContext,
    *,
    sets: list[str] | None = None,
    score: str = "msp",
    n_ood: int = 2000,
) -> MetricResult:
    """Per-set and mean AUROC, AUPR and FPR95 (%) of the test set against each OOD set.

    ``sets`` defaults to gaussian, rademacher, blobs and textures, plus the other CIFAR when it
    is under ``ctx.data_root`` (otherwise a "skipped" row in the ``sets`` table says why). A set
    listed explicitly must load, or a DataError says what is missing.
    """
    if score not in SCORES:
        raise ConfigError(f"ood score must be one of {', '.join(SCORES)}, got {score!r}")
    if n_ood < 1:
        raise ConfigError(f"ood n_ood must be >= 1, got {n_ood}")
    if sets is not None and (isinstance(sets, str) or not sets):
        raise ConfigError(f"ood sets must be a non-empty list of set names, got {sets!r}")
    # the OOD set makers load only here: reading a metric's metadata needs none of them
    from robench.data.ood import DEFAULT_SETS, load_ood_set

    optional = []
    if sets is None:
        sets = list(DEFAULT_SETS)
        optional = [OTHER_CIFAR[data.identity.name]] if data.identity.name in OTHER_CIFAR else []

    score_in = ood_score(predict_logits(model, data.images, ctx, desc="ood"), score)
    rows: list[dict[str, object]] = []
    values: dict[str, float] = {}
    for spec in [*sets, *optional]:
        seed = derive_seed(ctx.seed, "ood", spec)
        try:
            ood_set = load_ood_set(
                spec, n=n_ood, image_size=data.image_size, seed=seed, data_root=ctx.data_root
            )
        except DataError as e:
            if spec not in optional:
                raise
            rows.append({"set": spec, "spec": spec, "status": f"skipped: {e}"})
            continue
        if ood_set.name in {row["set"] for row in rows}:
            raise ConfigError(f"ood sets: two sets are labelled {ood_set.name!r}; rename a folder")
        measures = ood_measures(
            score_in, ood_score(predict_logits(model, ood_set.images, ctx, desc="ood"), score)
        )
        for key, value in measures.items():
            values[f"ood_{key}_{ood_set.name}"] = 100 * value
        rows.append(
            {"set": ood_set.name, "spec": spec, "status": "evaluated", "source": ood_set.source}
            | {"count": len(ood_set.images), "dtype": str(ood_set.images.dtype), "seed": seed}
            | {key: 100 * value for key, value in measures.items()}
        )
    evaluated = [row for row in rows if row["status"] == "evaluated"]
    for key in MEASURES:
        values[f"ood_{key}_mean"] = float(np.mean([row[key] for row in evaluated]))
    settings = {
        "score": score,
        "n_ood": n_ood,
        "positive": "ood",
        "fpr95": "recall closest to 95% (outlier-exposure get_measures)",
        "in_distribution": len(data),
    }
    return MetricResult(
        values=values,
        tables={"sets": pd.DataFrame(rows), "settings": pd.DataFrame([settings])},
        records={"ood_score": score_in},
    )


#: the values ``ood`` returns (``*``: an OOD set's name)
_TITLES = {"auroc": "OOD AUROC", "aupr": "OOD AUPR", "fpr95": "OOD FPR at 95 % TPR"}
ood.values = {  # type: ignore[attr-defined]
    f"ood_{m}_{part}": ValueInfo(
        f"{_TITLES[m]} ({'mean over sets' if part == 'mean' else 'one set'})",
        higher_is_better=m != "fpr95",
        headline=(m, part) == ("auroc", "mean"),
        short=_TITLES[m] if part == "mean" else "",
    )
    for m in MEASURES
    for part in ("mean", "*")
}
