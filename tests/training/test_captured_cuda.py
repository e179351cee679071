"""The captured step on a GPU (``scripts/gpu_check.sh`` runs these; they need a CUDA device).

On the CPU, tests/training/test_trainer.py checks the captured step's bookkeeping bit for bit
against the eager step; here the CUDA graphs themselves: that they are captured, replay the same
training as the eager step (up to the GPU's own run-to-run rounding) and that a step that cannot
be captured falls back to the eager step with a warning. BatchNorm, dropout and bf16 autocast
(on by default on CUDA) run inside the graphs.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from robench.augment.baseline import Baseline
from robench.pipeline import train
from robench.runs import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

IPMIX = ("augment.method='ipmix'", "augment.options={mixing_count = 8}")
CUTMIX = ("augment.method='cutmix'",)


def _train(tiny_config, tmp_path, kind: str, *overrides: str):
    cfg = tiny_config(
        *overrides,
        "train.device='cuda'",
        "train.batch_size=10",  # 48 images: 4 steps of 10, an uneven last step of 8
        "train.epochs=3",
        "model.options={drop_rate = 0.2}",  # dropout's RNG inside the graph
        f"train.step='{kind}'",
        f'results_dir="{tmp_path}/{kind}"',
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train(cfg, progress=False, evaluate_after=False)
    return run, [str(w.message) for w in caught if "captured" in str(w.message)]


@pytest.mark.parametrize("method", [IPMIX, CUTMIX], ids=["ipmix_jsd", "cutmix"])
def test_cuda_captured_training_equals_eager_training(tiny_config, tmp_path, method) -> None:
    eager, _ = _train(tiny_config, tmp_path, "eager", *method)
    captured, failures = _train(tiny_config, tmp_path, "captured", *method)
    assert failures == []  # every batch shape was captured
    a, b = (load_checkpoint(r / "checkpoint.pt")["model"] for r in (eager, captured))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    logs = [(r / "train_log.csv").read_text().splitlines()[1:] for r in (eager, captured)]
    for line_a, line_b in zip(*logs, strict=True):
        loss_a, loss_b = float(line_a.split(",")[2]), float(line_b.split(",")[2])
        assert loss_a == pytest.approx(loss_b, rel=1e-4)


def test_cuda_a_step_that_cannot_be_captured_runs_eagerly(tiny_config, tmp_path, monkeypatch):
    """A plugin loss that reads a value back to the host cannot be captured: one warning per
    batch shape, and the run trains on eagerly (the same run as ``train.step = 'eager'``)."""

    def host_reading_loss(self, logits):
        return logits[0].sum() * 0 if float(logits[0].abs().sum()) >= 0 else None

    monkeypatch.setattr(Baseline, "extra_loss", host_reading_loss)
    eager, _ = _train(tiny_config, tmp_path, "eager")
    captured, failures = _train(tiny_config, tmp_path, "captured")
    assert len(failures) == 2 and "could not be captured" in failures[0]
    assert load_checkpoint(captured / "checkpoint.pt")["epoch"] == 3
    a, b = (load_checkpoint(r / "checkpoint.pt")["model"] for r in (eager, captured))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
