"""``noise_error``: top-1 error under additive Gaussian noise of a given std, seeded."""

from __future__ import annotations

import torch

from robench.data import ImageData
from robench.evaluation.base import EvalContext, MetricResult, ValueInfo, predict_logits


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


#: the values ``noise_error`` returns, as robench reports them: ``noise_error`` is a headline
#: number (leaderboard column, bar chart, page column); claims may name both
noise_error.values = {
    "noise_error": ValueInfo("Error under Gaussian noise", headline=True),
    "noise_sigma": ValueInfo("Noise standard deviation", unit="of the [0, 1] range"),
}
