"""The metric plugin protocol and the data every metric receives.

A metric is a callable ``metric(model, data, ctx, **options) -> MetricResult``. It gets the model
(float input in [0, 1], normalisation inside), the clean test set and an :class:`EvalContext`
(device, batch size, seed, cache directory), and returns flat named numbers plus optional tables
and per-example records (so reports can bootstrap confidence intervals and pair methods).

A metric may also carry ``metric.validate(**options)``: called with the configured options
before any work (before training, too), it raises a ``ConfigError``/``DataError`` for options
that cannot work, such as a benchmark folder that is not there.

Every metric, built-in or plugin, declares the values it returns in ``metric.values``: value
name -> :class:`ValueInfo` (title, unit, direction, headline or not, interval method; ``*`` in a
name stands for a part that depends on the options, e.g. ``corruption_error_*``). The report,
the leaderboard, the plots and the claims read them from there (the torchmetrics way: the
metadata sits on the metric). Claims that name a value no metric declares are refused before
any data is read.

A metric that declares values with ``ci=EXAMPLES`` also carries ``metric.per_example(records,
table)``: from the records it saved (``records``: its own, without the ``<metric>/`` prefix) and
its saved tables (``table(name)``: a DataFrame or None) it gives back each such value's
:class:`PerExample` outcomes, which the leaderboard bootstraps and the claims pair.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from robench import distributed
from robench.console import bar
from robench.data.datasets import ImageData
from robench.data.folders import FolderImages
from robench.devices import resolve_device
from robench.errors import RobenchError
from robench.graphs import Captured, Function
from robench.io import cache_dir
from robench.registry import Registry


@dataclass
class EvalContext:
    """Where and how to evaluate: shared by every metric of one suite run.

    The defaults are the CLI's: the GPU when there is one, and the generated sets cached where
    ``ROBENCH_CACHE`` says (else ``results/cache``).
    """

    device: torch.device = field(default_factory=lambda: resolve_device("auto"))
    batch_size: int = 500
    seed: int = 0
    cache_dir: Path = field(default_factory=cache_dir)
    data_root: Path | None = None
    progress: bool = True
    amp: bool = False  # bf16 autocast for inference (CUDA)
    shard: bool = False  # under torchrun: each rank predicts a shard, all get every logit
    #: inference as CUDA graphs (robench.graphs): "auto" (on CUDA) | "eager" | "captured"
    forward: str = "auto"
    #: each model's captured inference, kept for the suite's later sets
    _captured: dict[Hashable, Captured] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def captures(self) -> bool:
        return self.forward == "captured" or (self.forward == "auto" and self.device.type == "cuda")

    def captured(self, key: Hashable, fn: Function) -> Function:
        """``fn``, or where this context captures, ``fn`` replayed as CUDA graphs
        (:class:`~robench.graphs.Captured`: its result is overwritten by the next call with the
        same shapes, keep a copy), kept under ``key`` (which names the model) for later calls."""
        if not self.captures:
            return fn
        if key not in self._captured:
            self._captured[key] = Captured(fn, "evaluate.forward")
        return self._captured[key]

    def logits_of(self, model: torch.nn.Module) -> Function:
        """uint8 or [0, 1] float images on the device -> float32 logits on the device: the
        model's forward, eager or captured (see :meth:`captured`)."""
        fn = functools.partial(_logits, model, amp=self.amp, graph=self.captures)
        return self.captured(("logits", model), fn)


def _logits(model: torch.nn.Module, x: torch.Tensor, *, amp: bool, graph: bool) -> torch.Tensor:
    """One batch's logits; nothing read back to the host (so it can be captured)."""
    x = x.float().div_(255.0 if x.dtype == torch.uint8 else 1.0)
    x = x.contiguous(memory_format=torch.channels_last)
    # autocast's weight cache is not allowed in a CUDA graph (and saves nothing in one forward)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=not graph):
        return model(x).float()


@dataclass
class MetricResult:
    """What one metric returns: ``values`` go into metrics.json and the leaderboard."""

    values: dict[str, float]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    records: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0  # wall time, filled in by the suite


class Metric(Protocol):
    def __call__(
        self, model: torch.nn.Module, data: ImageData, ctx: EvalContext, **options: Any
    ) -> MetricResult: ...


#: the metrics by name; the built-in ones register when their module is imported, at the first
#: look-up (so ``robench.evaluation.functional`` and the report's metadata reads stay light)
METRICS: Registry[Metric] = Registry(
    "metric",
    builtins=[
        f"robench.evaluation.{module}"
        for module in (
            "clean", "corruption", "calibration", "flip", "adversarial", "ood", "rendition",
            "corruption_bar",
        )
    ],
)  # fmt: skip

#: how an interval is computed: over seeds only, or also (with one seed) by a bootstrap over
#: the test examples of the run, for values that are means of per-example outcomes
SEEDS, EXAMPLES = "seeds", "examples"


@dataclass(frozen=True)
class ValueInfo:
    """How one value a metric returns is reported.

    ``headline`` values get a leaderboard column (mean, std and 95 % interval over seeds), a
    bar chart and a page column; the others reach runs.csv and claims. ``short`` names the
    column (``title`` when empty). ``ci``: :data:`SEEDS`, or :data:`EXAMPLES` where one run's
    records allow a bootstrap over its test examples (robench.reporting.examples)."""

    title: str
    unit: str = "%"
    higher_is_better: bool = False
    headline: bool = False
    short: str = ""
    ci: str = SEEDS

    def __post_init__(self) -> None:
        if self.ci not in (SEEDS, EXAMPLES):
            raise ValueError(f"ci must be {SEEDS!r} or {EXAMPLES!r}, got {self.ci!r}")

    @property
    def column(self) -> str:
        return self.short or self.title

    @property
    def better(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


@dataclass(frozen=True)
class PerExample:
    """The outcomes behind a value declared ``ci=EXAMPLES``: the value is their percent error,
    ``100 * (1 - mean(correct))`` (:func:`~robench.evaluation.functional.percent_error`);
    ``examples`` names which examples they are (with the test set's hash, the key under which
    two runs' outcomes pair)."""

    correct: np.ndarray  # (N,): 1 right, 0 wrong, or a fraction (e.g. over corruptions)
    examples: str


def value_infos(metric: Metric) -> dict[str, ValueInfo]:
    """``metric.values`` as ValueInfos (a plugin may give plain dicts of the same fields);
    raises TypeError/ValueError when malformed."""
    declared = getattr(metric, "values", None) or {}
    return {
        value: info if isinstance(info, ValueInfo) else ValueInfo(**info)
        for value, info in dict(declared).items()
    }


def metric_values(name: str) -> dict[str, ValueInfo]:
    """What metric ``name`` declares in ``metric.values``; a malformed declaration is one error
    naming the metric."""
    try:
        return value_infos(METRICS.get(name))
    except (TypeError, ValueError) as err:
        raise RobenchError(
            f"metric {name!r} declares malformed values ({err}); metric.values must map value "
            "names to ValueInfo(title, unit, higher_is_better, headline, short, ci)"
        ) from None


def declared_values() -> list[str]:
    """The value names (``*``: a wildcard) that the registered metrics declare they return."""
    return [v for name in METRICS.names() for v in metric_values(name)]


def batches(
    images: torch.Tensor | FolderImages, batch_size: int, desc: str = "", progress: bool = True
) -> Iterator[torch.Tensor]:
    """Slices of a uint8 (N, 3, H, W) tensor, with a tqdm bar; a set on disk is streamed in
    batches decoded by its DataLoader workers instead."""
    if isinstance(images, FolderImages):
        yield from bar(images.loader(batch_size), progress=progress, desc=desc, leave=False)
        return
    starts = range(0, len(images), batch_size)
    for start in bar(starts, progress=progress, desc=desc, leave=False, unit="batch"):
        yield images[start : start + batch_size]


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    images: torch.Tensor | FolderImages,
    ctx: EvalContext,
    desc: str = "predict",
) -> torch.Tensor:
    """Float32 logits (N, C) on the CPU, model in eval mode.

    ``images`` (N, 3, H, W) are uint8, or float already in [0, 1] (e.g. synthetic OOD noise that
    rounding to uint8 would change), or a :class:`FolderImages` streamed from disk.
    With ``ctx.shard`` (torchrun) each rank predicts its contiguous shard and the logits are
    all-gathered in order: every metric built on this function gets the single-process logits.
    """
    lo, hi = shard(len(images), ctx)
    if (lo, hi) == (0, len(images)):
        return _predict(model, images, ctx, desc)
    part = images.subset(range(lo, hi)) if isinstance(images, FolderImages) else images[lo:hi]
    return gather_shards(_predict(model, part, ctx, desc), len(images), ctx)


def shard(n: int, ctx: EvalContext) -> tuple[int, int]:
    """The rows ``[lo, hi)`` of ``n`` inputs this process evaluates: with ``ctx.shard`` under
    torchrun its contiguous shard (:func:`~robench.distributed.shard_bounds`), else all."""
    world = distributed.world()
    if ctx.shard and 1 < world.size <= n:
        return distributed.shard_bounds(n, world.rank, world.size)
    return 0, n


def gather_shards(local: torch.Tensor, n: int, ctx: EvalContext) -> torch.Tensor:
    """Every process's :func:`shard` rows of a per-input result, all ``n`` of them, in order,
    on every process (on the CPU); ``local`` itself where nothing is sharded."""
    if shard(n, ctx) == (0, n):
        return local
    if local.dtype == torch.bool:  # not every backend gathers bools
        return gather_shards(local.to(torch.uint8), n, ctx).bool()
    return distributed.gather_rows(local, n, ctx.device)


def _predict(
    model: torch.nn.Module, images: torch.Tensor | FolderImages, ctx: EvalContext, desc: str
) -> torch.Tensor:
    """The logits stay on the device until the last batch: one wait for the device per set,
    not one per batch."""
    model.eval()
    images = _on_device(images, ctx.device)
    out = []
    for chunk in batches(images, ctx.batch_size, desc, ctx.progress):
        out += [_forward(model, part, ctx) for part in _fitting(chunk, ctx)]
    return torch.cat(out).cpu()


def _on_device(
    images: torch.Tensor | FolderImages, device: torch.device
) -> torch.Tensor | FolderImages:
    """An in-memory set on the GPU in one copy, not batch by batch, where it takes at most a
    quarter of the GPU's free memory (else, and for sets on disk, batches travel one by one)."""
    if not isinstance(images, torch.Tensor) or device.type != "cuda":
        return images
    if images.nbytes > torch.cuda.mem_get_info(device)[0] // 4:
        return images
    return images.to(device)


def _fitting(chunk: torch.Tensor, ctx: EvalContext) -> list[torch.Tensor]:
    """The chunk itself, or halves of it once the device ran out of memory on that size."""
    size = ctx.batch_size
    return [chunk[i : i + size] for i in range(0, len(chunk), size)]


def _forward(model: torch.nn.Module, part: torch.Tensor, ctx: EvalContext) -> torch.Tensor:
    """Logits of one batch, on the device; on a CUDA out-of-memory error, halve
    ``ctx.batch_size`` and retry, so evaluation runs at the largest batch that fits (the size
    is kept for later batches)."""
    try:
        logits = ctx.logits_of(model)(part.to(ctx.device, non_blocking=True))
        return logits.clone() if ctx.captures else logits
    except torch.OutOfMemoryError:
        if len(part) <= 1:
            raise
        torch.cuda.empty_cache()
        ctx.batch_size = max(1, len(part) // 2)
        return torch.cat([_forward(model, p, ctx) for p in _fitting(part, ctx)])
