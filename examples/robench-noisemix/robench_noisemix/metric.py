"""``noise_error``: top-1 error under additive Gaussian noise of a given std, seeded."""

from __future__ import annotations

import torch

from robench.data import ImageData
from robench.evaluation.base import EvalContext, MetricResult, predict_logits


def noise_error(
    model: torch.nn.Module, data: ImageData, ctx: EvalContext, *, sigma: float = 0.08
) -> MetricResult:
    """Top-1 error (%) under additive Gaussian noise of std sigma (pixels in [0, 1]).

    The noise comes from a generator seeded by ``ctx.seed``, so every model of a benchmark sees
    the same noisy images; they are rounded to uint8, as a saved corrupted set would be.
    """
    gen = torch.Generator().manual_seed(ctx.seed)
    noisy = torch.empty_like(data.images)
    for start in range(0, len(data), ctx.batch_size):
        x = data.images[start : start + ctx.batch_size].float() / 255
        x = x + sigma * torch.randn(x.shape, generator=gen)
        noisy[start : start + len(x)] = x.clamp(0, 1).mul(255).round().to(torch.uint8)
    pred = predict_logits(model, noisy, ctx, desc="noise").argmax(1)
    correct = pred == data.labels
    return MetricResult(
        values={"noise_error": 100.0 * (1 - correct.float().mean().item()), "noise_sigma": sigma},
        records={"correct": correct.numpy()},
    )


#: ``robench report`` shows ``noise_error`` as a headline metric (leaderboard, bar chart, page)
noise_error.headline = {
    "noise_error": {"title": "Error under Gaussian noise", "unit": "%", "higher_is_better": False}
}

#: the values ``noise_error`` returns: claims may name them (``noisemix.noise_error < ...``)
noise_error.value_names = ("noise_error", "noise_sigma")
