"""The training loop: schedule, determinism, bit-exact resume, learning, NaN guard."""

from __future__ import annotations

import math

import pytest
import torch

from robench.errors import ConfigError, RobenchError
from robench.graphs import Captured
from robench.pipeline import train
from robench.runs import load_checkpoint, read_metrics
from robench.training.trainer import cosine_factor, step_kind


def test_cosine_schedule_matches_the_official_formula() -> None:
    lr, lr_min, total = 0.1, 1e-6, 100
    assert cosine_factor(0, total, lr, lr_min) == pytest.approx(1.0)
    assert cosine_factor(total, total, lr, lr_min) * lr == pytest.approx(lr_min)
    f = lr_min / lr
    mid = f + (1 - f) * 0.5 * (1 + math.cos(math.pi * 0.5))
    assert cosine_factor(50, total, lr, lr_min) == pytest.approx(mid)


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def _assert_same_weights(a, b) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.mark.parametrize("path", ["batch", "sample"])
def test_two_epochs_equal_one_plus_resume_plus_one(tiny_config, tmp_path, path) -> None:
    opts = f"augment.options={{path = '{path}'}}"
    straight = train(
        tiny_config(opts, f'results_dir="{tmp_path}/a"', "model.options={drop_rate = 0.2}"),
        progress=False,
    )
    cfg = tiny_config(opts, f'results_dir="{tmp_path}/b"', "model.options={drop_rate = 0.2}")
    stopped = train(cfg, progress=False, stop_after=1)
    assert read_metrics(stopped) is None  # an interrupted run has no results yet
    assert load_checkpoint(stopped / "checkpoint.pt")["epoch"] == 1
    resumed = train(cfg, resume=True, progress=False)
    assert resumed.name == straight.name
    _assert_same_weights(straight, resumed)
    a, b = read_metrics(straight), read_metrics(resumed)
    assert a["metrics"]["clean"] == b["metrics"]["clean"]
    assert (straight / "train_log.csv").read_text().splitlines()[1].split(",")[:4] == (
        (resumed / "train_log.csv").read_text().splitlines()[1].split(",")[:4]
    )


def test_workers_do_not_change_the_numbers(tiny_config, tmp_path) -> None:
    opts = "augment.options={path = 'sample'}"
    one = train(
        tiny_config(opts, "train.epochs=1", f'results_dir="{tmp_path}/w0"'),
        progress=False,
        evaluate_after=False,
    )
    two = train(
        tiny_config(opts, "train.epochs=1", "train.workers=2", f'results_dir="{tmp_path}/w2"'),
        progress=False,
        evaluate_after=False,
    )
    _assert_same_weights(one, two)


def test_different_seeds_differ(tiny_config, tmp_path) -> None:
    a = train(tiny_config("train.epochs=1", "seed=1"), progress=False, evaluate_after=False)
    b = train(tiny_config("train.epochs=1", "seed=2"), progress=False, evaluate_after=False)
    assert not torch.equal(_weights(a)["model.fc.weight"], _weights(b)["model.fc.weight"])


def test_learns_the_tiny_task(tiny_config) -> None:
    run = train(tiny_config("train.epochs=4"), progress=False)
    doc = read_metrics(run)
    assert doc["metrics"]["clean"]["clean_error"] < 50.0  # chance is 75 %
    assert doc["data"]["train"]["count"] == 48 and doc["data"]["test"]["count"] == 24
    assert doc["versions"]["torch"] == torch.__version__.split("+")[0] or doc["versions"]["torch"]
    assert doc["config"]["seed"] == doc["seed"] == 0


def test_existing_run_needs_resume_or_force(tiny_config) -> None:
    """A finished run asked for again is returned as it is; an unfinished one (a checkpoint, no
    metrics.json) must be resumed or started over, never silently retrained."""
    cfg = tiny_config("train.epochs=1")
    run = train(cfg, progress=False, evaluate_after=False)
    written = (run / "checkpoint.pt").stat().st_mtime_ns
    assert train(cfg, progress=False) == run
    assert (run / "checkpoint.pt").stat().st_mtime_ns == written
    (run / "metrics.json").unlink()
    with pytest.raises(RobenchError, match="--resume to continue it or --force"):
        train(cfg, progress=False)
    train(cfg, progress=False, force=True, evaluate_after=False)
    assert (run / "checkpoint.pt").stat().st_mtime_ns != written


def test_nan_loss_stops_with_a_clear_error(tiny_config) -> None:
    cfg = tiny_config("train.epochs=2", "train.lr=1e30", "train.weight_decay=0")
    with pytest.raises(RobenchError, match=r"NaN/inf at epoch 1, step \d+; no checkpoint was"):
        train(cfg, progress=False)  # diverges in the first epoch: nothing to resume from


def test_resume_of_a_finished_run_only_adds_missing_metrics(tiny_config, monkeypatch) -> None:
    cfg = tiny_config("train.epochs=1")
    run = train(cfg, progress=False)
    before = (run / "checkpoint.pt").stat().st_mtime_ns
    monkeypatch.setattr("robench.pipeline.Trainer.fit", lambda *a, **k: pytest.fail("retrained"))
    assert train(cfg, resume=True, progress=False) == run
    assert (run / "checkpoint.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize("method", ["ipmix", "cutmix"])
def test_the_captured_step_computes_what_the_eager_step_does(tiny_config, tmp_path, method):
    """``train.step = "captured"`` on the CPU runs the step a CUDA graph would replay (fixed
    input buffers, gradients zeroed in place, the sums on the device, one replay per batch
    shape): bit for bit the eager numbers, JSD's three views and CutMix's soft targets included,
    over 10 steps with an uneven last batch (48 images in batches of 10)."""
    opts = [f'augment.method="{method}"', "train.batch_size=10", "model.options={drop_rate=0.2}"]
    if method == "ipmix":
        opts.append("augment.options={mixing_count=8}")
    runs = [
        train(
            tiny_config(*opts, f"train.step='{kind}'", f'results_dir="{tmp_path}/{kind}"'),
            progress=False,
            evaluate_after=False,
        )
        for kind in ("eager", "captured")
    ]
    assert runs[0].name == runs[1].name  # the step kind is not part of what the run is
    assert [read_metrics(r)["training"]["step"] for r in runs] == ["eager", "captured"]
    _assert_same_weights(*runs)
    states = [load_checkpoint(r / "checkpoint.pt")["optimizer"]["state"] for r in runs]
    for a, b in zip(states[0].values(), states[1].values(), strict=True):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    logs = [(r / "train_log.csv").read_text().splitlines() for r in runs]
    assert [line.split(",")[:4] for line in logs[0]] == [line.split(",")[:4] for line in logs[1]]


def test_step_kind_resolves_auto_and_refuses_what_cannot_be_captured() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert step_kind("auto", cpu, 1, compiled=False) == "eager"
    assert step_kind("auto", cuda, 1, compiled=False) == "captured"
    assert step_kind("auto", cuda, 2, compiled=False) == "eager"
    assert step_kind("auto", cuda, 1, compiled=True) == "eager"
    assert step_kind("captured", cpu, 1, compiled=False) == "captured"
    with pytest.raises(ConfigError, match=r"2 torchrun processes: set train\.step"):
        step_kind("captured", cuda, 2, compiled=False)
    with pytest.raises(ConfigError, match=r"train\.compile = true: set train\.step"):
        step_kind("captured", cuda, 1, compiled=True)


def test_a_captured_step_replays_each_batch_shape_on_its_own_buffers() -> None:
    """The first batch of a shape runs as it comes (the capture's warm-up), every later one is
    copied into that shape's fixed buffers: an uneven last batch gets buffers of its own."""
    seen: list[tuple[int, float]] = []

    def fn(x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seen.append((x.data_ptr(), float(x.sum())))
        return x.sum() + targets.sum()

    step = Captured(fn, "train.step")
    batches = [torch.full((4, 3), float(v)) for v in (1, 2, 3)] + [torch.full((2, 3), 5.0)] * 3
    losses = [float(step(x, torch.zeros(len(x)))) for x in batches]
    assert losses == [12.0, 24.0, 36.0, 30.0, 30.0, 30.0]
    full, last = {p for p, _ in seen[1:3]}, {p for p, _ in seen[4:]}
    assert len(full) == len(last) == 1 and full != last
    assert seen[0][0] == batches[0].data_ptr() and seen[1][0] != batches[1].data_ptr()
