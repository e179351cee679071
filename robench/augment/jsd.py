"""The JSD consistency loss term that multi-view plugins (AugMix, IPMix) add to cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def jsd_consistency(logits: list[torch.Tensor]) -> torch.Tensor:
    """Jensen-Shannon consistency between the predictions on V views of the same images.

    AugMix/IPMix (``cifar.py`` of both): ``M = clamp(mean_v softmax(l_v), 1e-7, 1)``, then
    ``mean_v KL(p_v || M)`` with ``batchmean`` reduction (sum over classes, mean over images).
    The clamp keeps the log of the mixture finite; the official code hard-codes 3 views.
    """
    probs = [F.softmax(lv, dim=1) for lv in logits]
    log_mixture = torch.clamp(torch.stack(probs).mean(dim=0), 1e-7, 1).log()
    return sum(F.kl_div(log_mixture, p, reduction="batchmean") for p in probs) / len(probs)
