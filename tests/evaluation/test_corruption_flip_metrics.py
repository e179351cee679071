"""The corruption and flip metric plugins on a tiny model, and mCE against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from robench.data.datasets import DataIdentity, ImageData
from robench.evaluation.base import EvalContext
from robench.evaluation.corruption import corruption, eval_subset
from robench.evaluation.flip import flip
from robench.evaluation.functional import mce


def _data(n: int = 40, classes: int = 4) -> ImageData:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % classes
    base = (40 + 50 * labels).to(torch.uint8)[:, None, None, None].expand(n, 3, 32, 32)
    noise = torch.randint(0, 30, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    identity = DataIdentity("toy", "test", n, "0", "memory")
    return ImageData((base + noise).contiguous(), labels, [f"c{k}" for k in range(4)], identity)


class Brightness(torch.nn.Module):
    """Predicts the class from mean brightness: right on clean data, fooled by corruptions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = x.mean(dim=(1, 2, 3)) * 255
        centres = torch.tensor([55.0, 105.0, 155.0, 205.0])
        return -((level[:, None] - centres) ** 2) / 100


def _ctx(tmp_path) -> EvalContext:
    return EvalContext(batch_size=64, progress=False, cache_dir=tmp_path)


def test_eval_subset_is_seeded_sorted_and_spread() -> None:
    idx = eval_subset(1000, 100, seed=0)
    assert len(idx) == 100 and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, eval_subset(1000, 100, seed=0))
    assert not np.array_equal(idx, eval_subset(1000, 100, seed=1))
    assert idx.max() > 800  # not just the first 100 (a class-sorted set would be one class)
    assert np.array_equal(eval_subset(50, 0, seed=0), np.arange(50))


def test_corruption_metric(tmp_path) -> None:
    data = _data()
    names = ["gaussian_noise", "brightness", "contrast"]
    result = corruption(Brightness(), data, _ctx(tmp_path), corruptions=names, severities=[1, 5])
    table = result.tables["errors"]
    assert list(table.corruption.unique()) == names and set(table.severity) == {1, 5}
    assert result.values["corruption_error"] == pytest.approx(table.error.mean())
    for name in names:
        mean = table[table.corruption == name].error.mean()
        assert result.values[f"corruption_error_{name}"] == pytest.approx(mean)
    # brightness moves the mean brightness the model reads; contrast keeps it (by definition)
    errs = table.set_index(["corruption", "severity"]).error
    assert errs["brightness", 5] > errs["brightness", 1]
    assert errs["contrast", 5] == errs["contrast", 1] == 0
    assert result.records["correct"].shape == (3, 2, 40)
    # a second evaluation reuses the cached set and gives the same numbers
    again = corruption(Brightness(), data, _ctx(tmp_path), corruptions=names, severities=[1, 5])
    assert again.values == result.values


def test_corruption_metric_subset(tmp_path) -> None:
    result = corruption(
        Brightness(), _data(), _ctx(tmp_path), corruptions=["fog"], n_per_severity=12
    )
    assert result.records["correct"].shape == (1, 5, 12)
    assert (result.tables["errors"].n == 12).all()


def test_mce_hand_computed() -> None:
    rows = [("a", 1, 20.0), ("a", 2, 40.0), ("b", 1, 10.0), ("b", 2, 30.0)]
    ref_rows = [("a", 1, 30.0), ("a", 2, 50.0), ("b", 1, 20.0), ("b", 2, 60.0)]
    cols = ["corruption", "severity", "error"]
    got = mce(
        pd.DataFrame(rows, columns=cols),
        pd.DataFrame(ref_rows, columns=cols),
        clean_error=5.0,
        reference_clean_error=10.0,
    )
    # CE_a = 60/80, CE_b = 40/80; relative: (60-10)/(80-20), (40-10)/(80-20)
    assert got["mce"] == pytest.approx(100 * (60 / 80 + 40 / 80) / 2)
    assert got["relative_mce"] == pytest.approx(100 * (50 / 60 + 30 / 60) / 2)


def test_flip_metric(tmp_path) -> None:
    data = _data(n=8)
    result = flip(
        Brightness(), data, _ctx(tmp_path), perturbations=["gaussian_noise", "brightness"]
    )
    table = result.tables["flip"]
    assert list(table.perturbation) == ["gaussian_noise", "brightness"]
    assert (table.n == 8).all()
    assert result.values["mfp"] == pytest.approx(table.flip_probability.mean())
    assert 0 <= result.values["mfp"] <= 100


def test_flip_of_a_constant_model_is_zero(tmp_path) -> None:
    class Constant(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(x), 4)

    result = flip(Constant(), _data(n=6), _ctx(tmp_path), perturbations=["rotate", "shot_noise"])
    assert result.values["mfp"] == 0.0


def test_predict_logits_halves_the_batch_on_out_of_memory() -> None:
    from robench.evaluation.base import predict_logits

    class Picky(torch.nn.Module):
        """Runs out of memory on batches larger than 8."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if len(x) > 8:
                raise torch.OutOfMemoryError("fake")
            return x.flatten(1)[:, :3]

    images = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    ctx = EvalContext(batch_size=64, progress=False)
    logits = predict_logits(Picky(), images, ctx)
    assert 4 <= ctx.batch_size <= 8  # halved until it fitted, no further
    torch.testing.assert_close(logits, images.flatten(1)[:, :3].float() / 255)


def test_captured_inference_gives_the_eager_logits() -> None:
    """``evaluate.forward = "captured"`` (on the CPU: the forward on fixed buffers, as a CUDA
    graph replays it) gives the eager logits bit for bit: uint8 and float sets, uneven last
    batches, and later sets through the same captured forward (whose output each replay
    overwrites)."""
    from robench.evaluation.base import predict_logits

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4),
    )  # fmt: skip
    net.train()(torch.rand(8, 3, 12, 12))  # BatchNorm statistics that are not the identity
    images = torch.randint(0, 256, (50, 3, 12, 12), dtype=torch.uint8)
    eager = EvalContext(batch_size=16, progress=False, forward="eager")
    captured = EvalContext(batch_size=16, progress=False, forward="captured")
    assert not eager.captures and captured.captures
    for x in (images, images[:37], images.float() / 255, images[10:]):
        assert torch.equal(predict_logits(net, x, eager), predict_logits(net, x, captured))
    assert not net.training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_captured_inference_gives_the_eager_logits() -> None:
    """On a GPU the captured forward replays the eager forward's kernels: the same logits
    (bf16 autocast as the suite runs it), an uneven last batch included."""
    from robench.evaluation.base import predict_logits
    from robench.models import create_model

    net = create_model("wrn_16_2", 10).cuda().to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (1100, 3, 32, 32), dtype=torch.uint8)
    runs = {}
    for forward in ("eager", "captured"):
        ctx = EvalContext(batch_size=500, progress=False, amp=True, forward=forward)
        runs[forward] = [predict_logits(net, images, ctx) for _ in range(2)]
    torch.testing.assert_close(runs["captured"][1], runs["eager"][1], rtol=1e-3, atol=1e-3)
    # the first pass ran batches eagerly (warm-up) and captured, the second replayed them all
    torch.testing.assert_close(runs["captured"][0], runs["captured"][1], rtol=1e-3, atol=1e-3)
