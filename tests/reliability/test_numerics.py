"""A NaN or infinite loss stops training with a clear error and keeps the last good checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robench.errors import RobenchError
from robench.pipeline import train
from robench.runs import load_checkpoint, read_metrics, run_id


@pytest.mark.fault(
    "weights become NaN after a good epoch (an optimizer step poisoned by the test)",
    "stops with one line naming epoch and step; the last good checkpoint is kept",
)
def test_nan_loss_keeps_the_last_good_checkpoint(tiny_config, monkeypatch) -> None:
    cfg = tiny_config("train.epochs=2", "train.checkpoint_minutes=0")
    train(cfg, progress=False, stop_after=1)  # one good epoch, checkpointed
    run_dir = Path(cfg.results_dir) / "runs" / run_id(cfg)
    good = load_checkpoint(run_dir / "checkpoint.pt")
    # from here on the optimizer explodes: every parameter is poisoned after each step
    real_step = torch.optim.SGD.step

    def poisoned(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        for group in self.param_groups:
            for p in group["params"]:
                p.data.fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", poisoned)
    with pytest.raises(RobenchError, match=r"NaN/inf at epoch 2, step \d+.*last good checkpoint"):
        train(cfg, resume=True, progress=False)
    kept = load_checkpoint(run_dir / "checkpoint.pt")
    assert kept["epoch"] == 1
    assert all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])
    assert read_metrics(run_dir) is None
