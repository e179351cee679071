"""``flip``: CIFAR-P flip probability per perturbation and its mean (mFP).

The perturbation sequences are generated in-house (see :mod:`robench.data.corrupted_sets`);
the flip probability follows ``hendrycks/robustness`` ``ImageNet-P/cifar-p-eval.py``:
consecutive frames are compared, except for the noise sequences where every frame is compared
with the clean frame.
The reported mFP is the unnormalised mean over the 10 perturbations x 100, what the IPMix paper
calls "mFR" on CIFAR (its numbers match the unnormalised mean; docs/metrics.md#flip).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from robench.data.corruption_constants import TEST_PERTURBATIONS
from robench.data.datasets import ImageData
from robench.evaluation.base import METRICS, EvalContext, MetricResult, ValueInfo, predict_logits
from robench.evaluation.corruption import eval_subset
from robench.evaluation.functional import flip_probability


@METRICS.register("flip", description="CIFAR-P flip probability per perturbation and mFP")
def flip(
    model: torch.nn.Module,
    data: ImageData,
    ctx: EvalContext,
    *,
    perturbations: Sequence[str] = TEST_PERTURBATIONS,
    n_images: int = 0,
    seed: int = 0,
    workers: int = 0,
) -> MetricResult:
    """``n_images`` sequences from a seeded subset of the test set (0 = all, the benchmark)."""
    # the generators (OpenCV, SciPy) load only here: reading a metric's metadata needs none
    from robench.data.corrupted_sets import ensure_cifar_p, load_cifar_p
    from robench.data.perturbations import is_noise

    index = eval_subset(len(data), n_images, seed)
    images = data.images[index].permute(0, 2, 3, 1).numpy()
    folder = ensure_cifar_p(
        images,
        perturbations=list(perturbations),
        seed=seed,
        workers=workers or None,
        progress=ctx.progress,
        cache_root=ctx.cache_dir / "perturbations",
    )
    rows = []
    for name in perturbations:
        frames = load_cifar_p(folder, name)  # (N, T, H, W, 3)
        n, t = frames.shape[:2]
        x = torch.from_numpy(frames.reshape(n * t, *frames.shape[2:])).permute(0, 3, 1, 2)
        preds = predict_logits(model, x, ctx, desc=name).argmax(1).numpy().reshape(n, t)
        rows.append(
            {
                "perturbation": name,
                "flip_probability": 100.0 * flip_probability(preds, noise=is_noise(name)),
                "frames": t,
                "n": n,
            }
        )
    table = pd.DataFrame(rows)
    values = {
        "mfp": float(table["flip_probability"].mean()),
        **{f"fp_{r.perturbation}": float(r.flip_probability) for r in table.itertuples()},
    }
    return MetricResult(values=values, tables={"flip": table}, records={"index": index})


#: the values ``flip`` returns (``*``: a perturbation's name)
flip.values = {  # type: ignore[attr-defined]
    "mfp": ValueInfo("Mean flip probability (CIFAR-P)", headline=True, short="mFP"),
    "fp_*": ValueInfo("Flip probability under one perturbation"),
}
