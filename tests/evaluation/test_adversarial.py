"""PGD: the threat model (ball, range), that it attacks, determinism, torchattacks agreement."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robench.data.datasets import DataIdentity, ImageData
from robench.errors import ConfigError
from robench.evaluation.adversarial import pgd, pgd_attack
from robench.evaluation.base import EvalContext

HAS_TORCHATTACKS = importlib.util.find_spec("torchattacks") is not None
needs_torchattacks = pytest.mark.skipif(
    not HAS_TORCHATTACKS,
    reason="torchattacks is not installed (pip install --no-deps torchattacks==3.5.1)",
)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 5),
    )


def _batch(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 8, 8, generator=gen), torch.randint(0, 5, (n,), generator=gen)


def _data(n: int = 24) -> ImageData:
    x, y = _batch(n)
    images = (x * 255).round().to(torch.uint8)
    identity = DataIdentity("toy", "test", n, "0", "memory")
    return ImageData(images, y, [f"c{k}" for k in range(5)], identity)


def test_adversarial_images_stay_in_the_clean_ball_and_in_range() -> None:
    model, (x, y) = _model(), _batch()
    eps = 8 / 255
    adv = pgd_attack(model, x, y, eps=eps, step_size=2 / 255, steps=10, generator=_gen(0))
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() > eps / 2  # it moved


def test_start_centre_reproduces_the_aliasing_quirk() -> None:
    model, (x, y) = _model(), _batch()
    eps = 8 / 255
    adv = pgd_attack(model, x, y, eps=eps, step_size=2 / 255, centre="start", generator=_gen(0))
    distance = (adv - x).abs().amax()
    assert eps + 1e-4 < distance <= 2 * eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1


def test_attack_raises_the_loss() -> None:
    model, (x, y) = _model(), _batch()
    adv = pgd_attack(model, x, y, eps=8 / 255, step_size=2 / 255, steps=10, generator=_gen(0))
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y) + 1e-3


def test_zero_eps_returns_the_clean_images() -> None:
    model, (x, y) = _model(), _batch()
    assert torch.equal(pgd_attack(model, x, y, eps=0.0, generator=_gen(0)), x)


def test_same_seed_same_result_other_seed_other_start() -> None:
    model, (x, y) = _model(), _batch()
    a = pgd_attack(model, x, y, eps=8 / 255, steps=2, generator=_gen(3))
    b = pgd_attack(model, x, y, eps=8 / 255, steps=2, generator=_gen(3))
    c = pgd_attack(model, x, y, eps=8 / 255, steps=2, generator=_gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_restarts_keep_each_examples_worst_run_and_restore_the_mode() -> None:
    model, (x, y) = _model(), _batch()
    model.train()
    kwargs = {"eps": 16 / 255, "step_size": 4 / 255, "steps": 3}
    gen = _gen(5)
    runs = [pgd_attack(model, x, y, generator=gen, **kwargs) for _ in range(3)]
    best = pgd_attack(model, x, y, restarts=3, generator=_gen(5), **kwargs)
    assert model.training
    model.eval()
    with torch.no_grad():
        losses = torch.stack([F.cross_entropy(model(r), y, reduction="none") for r in runs])
        wrong = torch.stack([model(r).argmax(1) != y for r in runs])
        best_loss = F.cross_entropy(model(best), y, reduction="none")
        best_wrong = model(best).argmax(1) != y
    assert torch.equal(best_wrong, wrong.any(0))
    robust = ~wrong.any(0)
    torch.testing.assert_close(best_loss[robust], losses.amax(0)[robust])


@needs_torchattacks
def test_matches_torchattacks_pgd_from_the_same_start() -> None:
    import torchattacks

    model, (x, y) = _model(), _batch()
    for eps, alpha, steps in [(2 / 255, 0.5 / 255, 20), (8 / 255, 2 / 255, 10)]:
        torch.manual_seed(11)  # torchattacks draws its start from the global CPU generator
        theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
        ours = pgd_attack(model, x, y, eps=eps, step_size=alpha, steps=steps, generator=_gen(11))
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)
        assert not torch.equal(ours, x)


def test_metric_values_records_and_batch_size_independence() -> None:
    model, data = _model(), _data()
    opts = {"eps": 8 / 255, "step_size": 2 / 255, "steps": 5, "n": 20}
    small = pgd(model, data, EvalContext(batch_size=7, progress=False), **opts)
    large = pgd(model, data, EvalContext(batch_size=64, progress=False), **opts)
    assert set(small.values) == {"pgd_error", "pgd_clean_error_on_subset"}
    assert small.records["adv_correct"].shape == (20,)
    np.testing.assert_array_equal(small.records["adv_correct"], large.records["adv_correct"])
    adv_error = 100 * (1 - small.records["adv_correct"].mean())
    assert small.values["pgd_error"] == pytest.approx(adv_error)
    assert small.values["pgd_error"] >= small.values["pgd_clean_error_on_subset"]
    assert small.tables["settings"].loc[0, "n"] == 20


def test_captured_pgd_gives_the_eager_examples() -> None:
    """``evaluate.forward = "captured"`` replays all steps of a run as one graph (on the CPU the
    same function on fixed buffers): the same adversarial examples, batch after batch through
    one context, with restarts, and the same metric records over uneven batches."""
    model, (x, y) = _model(), _batch(24)
    ctx = EvalContext(progress=False, forward="captured")
    kwargs = {"eps": 8 / 255, "step_size": 2 / 255, "steps": 3}
    for restarts in (1, 2, 1):
        for part in (slice(0, 8), slice(8, 16), slice(16, 21)):
            eager = pgd_attack(
                model, x[part], y[part], restarts=restarts, generator=_gen(7), **kwargs
            )
            captured = pgd_attack(
                model, x[part], y[part], restarts=restarts, generator=_gen(7), ctx=ctx, **kwargs
            )
            assert torch.equal(eager, captured)
    data, opts = _data(), {**kwargs, "n": 20}
    runs = [
        pgd(model, data, EvalContext(batch_size=7, progress=False, forward=kind), **opts)
        for kind in ("eager", "captured")
    ]
    np.testing.assert_array_equal(runs[0].records["adv_correct"], runs[1].records["adv_correct"])


def test_metric_with_zero_eps_gives_the_clean_error() -> None:
    model, data = _model(), _data()
    result = pgd(model, data, EvalContext(progress=False), eps=0.0, steps=3)
    assert result.values["pgd_error"] == pytest.approx(result.values["pgd_clean_error_on_subset"])
    np.testing.assert_array_equal(result.records["adv_correct"], result.records["clean_correct"])


def test_metric_refuses_bad_options() -> None:
    model, data, ctx = _model(), _data(), EvalContext(progress=False)
    with pytest.raises(ConfigError, match="centre"):
        pgd(model, data, ctx, centre="middle")
    with pytest.raises(ConfigError, match="restarts"):
        pgd(model, data, ctx, restarts=0)
    with pytest.raises(ConfigError, match="attack"):
        pgd(model, data, ctx, attack="fgsm")
    with pytest.raises(TypeError):
        pgd(model, data, ctx, epsilon=0.1)


def test_torchattacks_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # makes the import fail
    with pytest.raises(ConfigError, match=r"robench\[attacks\]"):
        pgd(_model(), _data(), EvalContext(progress=False), attack="torchattacks:FGSM")


@needs_torchattacks
def test_torchattacks_attacks_by_name() -> None:
    model, data, ctx = _model(), _data(), EvalContext(progress=False)
    fgsm = pgd(model, data, ctx, attack="torchattacks:FGSM", eps=8 / 255)
    assert 0 <= fgsm.values["pgd_error"] <= 100
    apgd = pgd(model, data, ctx, attack="torchattacks:APGD", eps=8 / 255, steps=5, n=8)
    assert apgd.records["adv_correct"].shape == (8,)
    assert apgd.tables["settings"].loc[0, "attack"] == "torchattacks:APGD"
    with pytest.raises(ConfigError, match="no attack"):
        pgd(model, data, ctx, attack="torchattacks:Nope")
    with pytest.raises(ConfigError, match="attack_options"):
        pgd(model, data, ctx, attack="torchattacks:FGSM", attack_options={"bogus": 1})


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_each_shard_attacks_its_examples_from_the_one_process_starts(monkeypatch) -> None:
    """Under torchrun every rank attacks its shard: rank r's adversarial images are rows
    [lo, hi) of the one-process ones, bit for bit (its generator skips the earlier starts),
    and the gathered outcomes give the one-process error."""
    from robench import distributed
    from robench.evaluation import adversarial

    made: list[torch.Tensor] = []
    attack = adversarial.pgd_attack

    def spy(*args, **kwargs):
        adv = attack(*args, **kwargs)
        made.append(adv)
        return adv

    monkeypatch.setattr(adversarial, "pgd_attack", spy)
    model, data = _model(), _data(23)
    opts = {"eps": 8 / 255, "step_size": 2 / 255, "steps": 3, "restarts": 2}
    ctx = EvalContext(batch_size=5, progress=False, shard=True)
    single = pgd(model, data, ctx, **opts)
    one = torch.cat(made).reshape(2, 23, -1)  # (restart, example, pixels)

    shards, gathered = [], []
    for rank in range(3):
        made.clear()
        monkeypatch.setattr(distributed, "world", lambda rank=rank: distributed.World(rank, 3))

        def gather(local, n, device, rank=rank):  # rank's rows in place, the rest from `single`
            lo, hi = distributed.shard_bounds(n, rank, 3)
            if local.dtype == torch.uint8 and local.dim() == 1:  # the adversarial outcomes
                gathered.append(local)
                full = torch.from_numpy(single.records["adv_correct"]).to(torch.uint8)
            else:  # the clean logits
                full = torch.zeros((n, *local.shape[1:]), dtype=local.dtype)
            full[lo:hi] = local
            return full

        monkeypatch.setattr(distributed, "gather_rows", gather)
        pgd(model, data, ctx, **opts)
        shards.append(torch.cat(made).reshape(2, -1, one.shape[-1]))
    assert [s.shape[1] for s in shards] == [8, 8, 7]
    assert torch.equal(torch.cat(shards, dim=1), one)
    outcomes = torch.cat(gathered).bool().numpy()
    np.testing.assert_array_equal(outcomes, single.records["adv_correct"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_captured_pgd_gives_the_eager_examples() -> None:
    """On a GPU the 20 steps of a run replay as one graph: the eager run's examples (a gradient
    sign may flip where the GPU's rounding differs: at most 0.1 % of the elements)."""
    model, (x, y) = _model().cuda(), _batch(64)
    x, y = x.cuda(), y.cuda()
    ctx = EvalContext(device=torch.device("cuda"), progress=False, forward="captured")
    runs = {}
    for name, context in (("eager", None), ("captured", ctx)):
        runs[name] = [
            pgd_attack(model, x, y, eps=8 / 255, generator=_gen(3), ctx=context).cpu()
            for _ in range(3)  # warm-up, capture, replay
        ]
    for eager, captured in zip(runs["eager"], runs["captured"], strict=True):
        assert (eager != captured).float().mean() <= 1e-3
