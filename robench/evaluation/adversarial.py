"""L-inf PGD (own implementation) and, where installed, torchattacks' attacks by name.

Our PGD is the PixMix setting (eps 2/255, step 0.5/255, 20 steps, one uniform random start,
sign of the summed cross-entropy gradient, clip to [0, 1]) with the projection ball centred on
the clean image, as in Madry et al. and torchattacks. ``centre="start"`` reproduces PixMix's
storage-aliasing quirk instead (``andyzoujm/pixmix`` ``cifar.py``; docs/metrics.md#pgd): the
ball is centred on the randomly started point, which is not clipped before the first step, so
the final perturbation can reach 2 eps from the clean image. Attacks run in float32 without
autocast, so ``ctx.amp`` never changes a gradient sign.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from robench.console import bar
from robench.data.datasets import ImageData
from robench.errors import ConfigError
from robench.evaluation.base import (
    EXAMPLES,
    METRICS,
    EvalContext,
    MetricResult,
    PerExample,
    ValueInfo,
    gather_shards,
    predict_logits,
    shard,
)
from robench.io import derive_seed

CENTRES = ("clean", "start")
TORCHATTACKS_PREFIX = "torchattacks:"


def _ce_grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy with respect to ``x``, in float32."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        loss = F.cross_entropy(model(x).float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _one_run(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool,
    centre: str,
    generator: torch.Generator | None,
    ctx: EvalContext | None,
) -> torch.Tensor:
    """One PGD run from one start; see :func:`pgd_attack`."""
    adv = x.clone()
    if random_start:
        device = generator.device if generator is not None else x.device
        noise = torch.empty(x.shape, device=device).uniform_(-eps, eps, generator=generator)
        adv = adv + noise.to(x.device)
    iterate = functools.partial(
        _iterate, model, eps=eps, step_size=step_size, steps=steps, centre=centre
    )
    if ctx is not None:  # on CUDA all the steps as one graph, kept for the later batches
        iterate = ctx.captured(("pgd", model, eps, step_size, steps, centre), iterate)
    return iterate(adv, x, y)


def _iterate(
    model: torch.nn.Module,
    adv: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    centre: str,
) -> torch.Tensor:
    """The PGD steps from the start ``adv``; nothing read back to the host (so they can be
    captured as one CUDA graph)."""
    if centre == "start":  # PixMix: the clean reference aliases the unclipped start
        lo, hi = adv - eps, adv + eps
    else:
        adv = adv.clamp(0, 1)
    for _ in range(steps):
        grad = _ce_grad(model, adv, y)
        adv = adv + step_size * grad.sign()
        if centre == "start":
            adv = torch.min(torch.max(adv, lo), hi).clamp(0, 1)
        else:
            adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    return adv.detach()


def pgd_attack(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 2 / 255,
    step_size: float = 0.5 / 255,
    steps: int = 20,
    random_start: bool = True,
    restarts: int = 1,
    centre: str = "clean",
    generator: torch.Generator | None = None,
    ctx: EvalContext | None = None,
) -> torch.Tensor:
    """Untargeted L-inf PGD adversarial examples for float images ``x`` in [0, 1].

    Each step adds ``step_size * sign(grad of summed CE)``, then projects onto the eps-ball
    around the clean image (``centre="clean"``, default) and clips to [0, 1]. Random starts are
    uniform in [-eps, eps], drawn from ``generator`` (the global RNG when None; on the CPU both
    give torchattacks' exact start for the same seed). With several restarts each example keeps
    its worst run: misclassified first, then highest loss. The model runs in eval mode and gets
    its previous mode back afterwards. With ``ctx``, the steps of a run are replayed as one CUDA
    graph where the context captures (``evaluate.forward``; the same examples), and the graph
    is kept in ``ctx`` for later calls with the same model and settings.
    """
    if centre not in CENTRES:
        raise ValueError(f"centre must be one of {CENTRES}, got {centre!r}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    was_training = model.training
    model.eval()
    x = x.detach().float()
    try:
        run = functools.partial(
            _one_run, model, x, y, eps, step_size, steps, random_start, centre, generator, ctx
        )
        if restarts == 1:
            return run()
        best = best_wrong = best_loss = None
        for _ in range(restarts):
            adv = run().clone()  # a captured run's result is overwritten by the next
            with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
                logits = model(adv).float()
            loss = F.cross_entropy(logits, y, reduction="none")
            wrong = logits.argmax(1) != y
            if best is None:
                best, best_wrong, best_loss = adv, wrong, loss
                continue
            better = (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))
            best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), adv, best)
            best_wrong = torch.where(better, wrong, best_wrong)
            best_loss = torch.where(better, loss, best_loss)
        return best
    finally:
        model.train(was_training)


def _torchattacks_attack(
    name: str,
    model: torch.nn.Module,
    *,
    eps: float,
    step_size: float,
    steps: int,
    restarts: int,
    seed: int,
    num_classes: int,
    attack_options: dict[str, Any],
) -> Any:
    """Build ``torchattacks.<name>`` with our options where its constructor takes them."""
    try:
        import torchattacks
    except ImportError:
        raise ConfigError(
            f"attack {TORCHATTACKS_PREFIX}{name} needs torchattacks: "
            "pip install 'robench[attacks]' (or pip install --no-deps torchattacks==3.5.1)"
        ) from None
    if name not in torchattacks.__all__:
        raise ConfigError(
            f"torchattacks has no attack {name!r}; choose one of: {', '.join(torchattacks.__all__)}"
        )
    cls = getattr(torchattacks, name)
    ours = {
        "eps": eps,
        "alpha": step_size,
        "steps": steps,
        "n_restarts": restarts,
        "seed": seed,
        "n_classes": num_classes,
    }
    accepted = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in ours.items() if k in accepted} | attack_options
    try:
        return cls(model, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"attack_options for torchattacks.{name}: {exc}") from None


@METRICS.register("pgd", description="L-inf PGD error (PixMix setting: 2/255, 20 steps)")
def pgd(
    model: torch.nn.Module,
    data: ImageData,
    ctx: EvalContext,
    *,
    attack: str = "pgd",
    eps: float = 2 / 255,
    step_size: float = 0.5 / 255,
    steps: int = 20,
    restarts: int = 1,
    n: int = 0,
    centre: str = "clean",
    attack_options: dict[str, Any] | None = None,
) -> MetricResult:
    """Adversarial error (%) on the first ``n`` test images (0 = all) and clean error on them.

    ``attack`` is ``"pgd"`` (ours) or ``"torchattacks:<Name>"`` (e.g. FGSM, APGD, CW, Square,
    AutoAttack; eps, step size as alpha, steps, restarts, seed and class count are passed where
    the constructor takes them, ``attack_options`` adds or overrides keyword arguments). Random
    starts come from one CPU generator per restart seeded from ``ctx.seed``, drawn in example
    order, so results do not depend on the batch size. With restarts an example counts as
    robust only if it survives every one.

    Under torchrun (``ctx.shard``) each process attacks its contiguous shard of the images and
    the outcomes are gathered. Our ``pgd`` first skips the starts of the examples before its
    shard, so it gives the one-process numbers; a torchattacks attack draws from the global RNG
    in its own way, and each process seeds it alike, so its random starts (not its settings)
    differ from one process's.
    """
    _check_options(**{k: v for k, v in locals().items() if k not in ("model", "data", "ctx")})
    count = len(data) if n == 0 else min(n, len(data))
    images, labels = data.images[:count], data.labels[:count]
    seed = derive_seed(ctx.seed, "pgd", attack)

    # Clean predictions in float32 too, so eps = 0 reproduces them exactly even with ctx.amp.
    fp32 = dataclasses.replace(ctx, amp=False)
    clean_correct = predict_logits(model, images, fp32, desc="pgd clean").argmax(1) == labels
    lo, hi = shard(count, ctx)
    adv_correct = torch.ones(hi - lo, dtype=torch.bool)
    model.eval()
    cpu_only = ctx.device.type == "cpu"
    for restart in range(restarts if attack == "pgd" else 1):
        if attack == "pgd":
            generator = torch.Generator().manual_seed(derive_seed(seed, restart))
            # the starts of the examples before this shard (one draw per element, in order)
            torch.empty((lo, *images.shape[1:])).uniform_(generator=generator)
            run = functools.partial(
                pgd_attack,
                model,
                eps=eps,
                step_size=step_size,
                steps=steps,
                centre=centre,
                generator=generator,
                ctx=ctx,
            )
        else:
            run = _torchattacks_attack(
                attack.removeprefix(TORCHATTACKS_PREFIX),
                model,
                eps=eps,
                step_size=step_size,
                steps=steps,
                restarts=restarts,
                seed=seed % 2**31,
                num_classes=data.num_classes,
                attack_options=attack_options or {},
            )
        with torch.random.fork_rng(devices=[] if cpu_only else None, device_type=ctx.device.type):
            torch.manual_seed(seed)  # torchattacks draws from the global RNG; restored after
            starts = range(lo, hi, ctx.batch_size)
            for start in bar(starts, progress=ctx.progress, desc=f"{attack} #{restart}"):
                sl = slice(start, min(start + ctx.batch_size, hi))
                x = images[sl].to(ctx.device).float().div_(255)
                x = x.contiguous(memory_format=torch.channels_last)
                adv = run(x, labels[sl].to(ctx.device))
                with torch.no_grad(), torch.autocast(ctx.device.type, enabled=False):
                    pred = model(adv).float().argmax(1).cpu()
                adv_correct[start - lo : sl.stop - lo] &= pred == labels[sl]
    adv_correct = gather_shards(adv_correct, count, ctx)

    settings = {
        "attack": attack,
        "eps": eps,
        "step_size": step_size,
        "steps": steps,
        "restarts": restarts,
        "centre": centre,
        "n": count,
        "seed": seed,
        "attack_options": repr(attack_options or {}),
    }
    return MetricResult(
        values={
            "pgd_error": 100 * (1 - adv_correct.double().mean().item()),
            "pgd_clean_error_on_subset": 100 * (1 - clean_correct.double().mean().item()),
        },
        tables={"settings": pd.DataFrame([settings])},
        records={"adv_correct": adv_correct.numpy(), "clean_correct": clean_correct.numpy()},
    )


#: the values ``pgd`` returns
pgd.values = {  # type: ignore[attr-defined]
    "pgd_error": ValueInfo("PGD error", headline=True, ci=EXAMPLES),
    "pgd_clean_error_on_subset": ValueInfo("Clean error on the attacked images"),
}


def pgd_per_example(
    records: Mapping[str, np.ndarray], table: Callable[[str], pd.DataFrame | None]
) -> dict[str, PerExample]:
    """Each attacked image (the first ``n`` of the test set) right or wrong under attack."""
    if "adv_correct" not in records:
        return {}
    adv = records["adv_correct"].astype(float)
    return {"pgd_error": PerExample(adv, f"first{len(adv)}")}


pgd.per_example = pgd_per_example  # type: ignore[attr-defined]


def _check_options(**options: Any) -> None:
    """The option values ``pgd`` can work with (checked before training, too); options not
    given take ``pgd``'s defaults."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(pgd).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    }
    o = defaults | options
    eps, step_size, steps, restarts, n = (
        o[k] for k in ("eps", "step_size", "steps", "restarts", "n")
    )
    centre, attack = o["centre"], o["attack"]
    if eps < 0 or step_size < 0 or steps < 0 or restarts < 1 or n < 0:
        raise ConfigError(
            "pgd needs eps, step_size, steps, n >= 0 and restarts >= 1; "
            f"got eps={eps}, step_size={step_size}, steps={steps}, restarts={restarts}, n={n}"
        )
    if centre not in CENTRES:
        raise ConfigError(f"pgd centre must be one of {CENTRES}, got {centre!r}")
    if attack != "pgd" and not attack.startswith(TORCHATTACKS_PREFIX):
        raise ConfigError(f"attack must be 'pgd' or 'torchattacks:<Name>', got {attack!r}")


pgd.validate = _check_options  # type: ignore[attr-defined]
