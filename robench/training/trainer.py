"""The training loop: SGD + Nesterov with a per-step cosine schedule, as in the AugMix/IPMix code.

Determinism: the shuffle of each epoch, every augmentation draw (per sample and per step) and the
global torch RNG (dropout) are seeded from (seed, epoch, index or step), never from a running
state, so a run resumed from any checkpoint (end of an epoch, or mid-epoch: every
``checkpoint_every_steps`` steps, every ``checkpoint_minutes``, and on SIGINT/SIGTERM/SIGUSR2)
repeats an uninterrupted run bit for bit on the CPU, whatever the number of DataLoader workers.

Under torchrun (see :mod:`robench.distributed`) ``cfg.batch_size`` is the global batch:
rank ``r`` trains on the ``r``-th contiguous slice of each global batch of that same order, the
per-step draws add the rank to their seed (independent augmentations across ranks), and the
checkpoint stores global step and sums, so a run resumes under any world size.

On one CUDA device the step up to the optimizer is replayed as CUDA graphs (``train.step``,
:meth:`Trainer._forward_backward`, :mod:`robench.graphs`): the same numbers, without Python's
launch cost.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from robench import distributed
from robench.augment.base import Augmentation
from robench.config import TrainConfig
from robench.console import bar, say
from robench.data import ImageData
from robench.data.folders import FolderImages
from robench.devices import resolve_device, use_amp
from robench.errors import ConfigError, Interrupted, RobenchError
from robench.graphs import Captured
from robench.io import atomic_write
from robench.runs import load_checkpoint, save_checkpoint
from robench.trackers import Tracker
from robench.training.batch_stage import Batch, BatchStage, BatchWorkers, batch_stage
from robench.training.sync_batchnorm import sync_batch_norm

# Tags that keep the seed streams of different purposes apart.
_SHUFFLE, _SAMPLE, _STEP, _TORCH = 1, 2, 3, 4


def _seed(*parts: int) -> int:
    """A 64-bit torch seed from integers, through numpy's SeedSequence (well mixed, stable)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0])


def batch_workers(setting: int, device: torch.device) -> int:
    """``train.batch_workers``: -1 (auto) is 2 on CUDA, where the batched augmentations are
    bound by the host (BENCHMARKS.md: IPMix + JSD 1.8x the plain step inline, 1.0x with 2
    workers), and 0 on the CPU, where workers would compete with the model for the same cores."""
    if setting >= 0:
        return setting
    return 2 if device.type == "cuda" else 0


def step_kind(setting: str, device: torch.device, world_size: int, compiled: bool) -> str:
    """``train.step``: "auto" is "captured" on one CUDA device (:meth:`Trainer._forward_backward`
    as CUDA graphs, :mod:`robench.graphs`) and "eager" elsewhere: on the CPU nothing is
    captured, torchrun's gradient all-reduce and torch.compile manage their own launches."""
    if setting == "captured" and (world_size > 1 or compiled):
        why = f"{world_size} torchrun processes" if world_size > 1 else "train.compile = true"
        raise ConfigError(
            f"train.step = 'captured' does not work with {why}: set train.step = 'auto' or 'eager'"
        )
    if setting != "auto":
        return setting
    return "captured" if device.type == "cuda" and world_size == 1 and not compiled else "eager"


def cosine_factor(step: int, total: int, lr: float, lr_min: float) -> float:
    """The official per-step schedule: lr_t / lr = f + (1 - f) * (1 + cos(pi t / T)) / 2."""
    floor = lr_min / lr if lr > 0 else 0.0
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * step / total))


class AugmentedImages(Dataset):
    """Applies a plugin's per-sample stage with a generator seeded by (seed, epoch, index).

    Images come from the in-memory uint8 set, or, for a set on disk (``data.on_disk``), are
    decoded with RandomResizedCrop + flip drawn from that same generator first. A plugin without
    a per-sample stage then gets the uint8 crop as its single view (its batch stage follows).
    """

    def __init__(self, data: ImageData, plugin: Augmentation, seed: int) -> None:
        self.files = data.images if isinstance(data.images, FolderImages) else None
        # uint8 HWC, as PIL sees it
        self.images = None if self.files is not None else data.images.permute(0, 2, 3, 1).numpy()
        self.labels = data.labels
        self.plugin = plugin
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, _SAMPLE, self.epoch, index])
        files = self.files
        image = self.images[index] if files is None else files.train_image(index, rng)
        if not self.plugin.has_sample:  # uint8 (1, 3, H, W): a quarter of the float bytes
            return torch.from_numpy(image.transpose(2, 0, 1).copy())[None], self.labels[index]
        views = self.plugin.sample(image, rng)
        return torch.from_numpy(views), self.labels[index]


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


@dataclass
class Partial:
    """How far the current epoch got: what a mid-epoch checkpoint carries besides the weights."""

    step: int = 0
    loss_sum: float = 0.0
    wrong_sum: int = 0
    seen: int = 0
    seconds: float = 0.0


@dataclass
class EpochStats:
    epoch: int
    lr: float
    train_loss: float
    train_error: float
    seconds: float
    images_per_s: float


class Trainer:
    """Trains ``model`` on ``data`` with ``plugin``; checkpoints every epoch to ``checkpoint``."""

    def __init__(
        self,
        model: torch.nn.Module,
        plugin: Augmentation,
        data: ImageData,
        cfg: TrainConfig,
        *,
        seed: int,
        checkpoint: Path,
        log_csv: Path,
        progress: bool = True,
        detect_anomaly: bool = False,
        tracker: Tracker | None = None,
        log_every: int = 20,
    ) -> None:
        self.world = distributed.world()
        self.device = distributed.rank_device(resolve_device(cfg.device))
        self.amp = use_amp(cfg.amp, self.device)
        self.cfg, self.plugin, self.data, self.seed = cfg, plugin, data, seed
        self.checkpoint, self.log_csv = checkpoint, log_csv
        self.progress = progress and self.world.main
        self.detect_anomaly = detect_anomaly
        self.tracker = tracker if tracker is not None and self.world.main else Tracker()
        self.log_every = log_every
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.memory_format = memory_format
        if self.world.size > 1:
            self._check_shardable(len(data))
            model = sync_batch_norm(model, self.device)
        self.model = model.to(self.device, memory_format=memory_format)
        net: torch.nn.Module = self.model
        if self.world.size > 1:  # gradient all-reduce; starts from rank 0's weights and buffers
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = DistributedDataParallel(self.model, device_ids=ids)
        # what the steps call: the model (or its DDP wrapper), or its torch.compile'd form
        self.forward = torch.compile(net) if cfg.compile else net
        self.step_kind = step_kind(cfg.step, self.device, self.world.size, cfg.compile)
        if self.step_kind == "captured" and detect_anomaly:
            self.step_kind = "eager"  # anomaly mode checks every op on the host
        # the epoch's running sums, on the device: filled by the step, read every few steps
        self._loss_sum = torch.zeros((), device=self.device)
        self._wrong_sum = torch.zeros((), dtype=torch.int64, device=self.device)
        captured = self.step_kind == "captured"
        self._captured = Captured(self._forward_backward, "train.step") if captured else None
        self.steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: cosine_factor(s, self.total_steps, cfg.lr, cfg.lr_min)
        )
        self.start_epoch = 0
        self.partial = Partial()
        self.history: list[EpochStats] = []
        self._stop_requested = False
        self._last_save = time.monotonic()
        # the per-sample path: a plugin's sample stage, or decoding a set that is on disk
        per_sample = plugin.has_sample or data.on_disk
        self._dataset = AugmentedImages(data, plugin, seed) if per_sample else None
        self._stage: BatchStage | None = None  # the batch path: the set on the device
        self._workers: BatchWorkers | None = None
        # processes making the batch path's batches (none for the per-sample path)
        self.batch_workers = 0 if per_sample else batch_workers(cfg.batch_workers, self.device)
        if self.batch_workers > 0:
            stage = BatchStage(data.images, data.labels, plugin, self.device)
            self._workers = BatchWorkers(stage, self.batch_workers)
        elif self._dataset is None:  # hold the uint8 set on the training device
            images, labels = data.images.to(self.device), data.labels.to(self.device)
            self._stage = BatchStage(images, labels, plugin, self.device)

    def _check_shardable(self, n: int) -> None:
        """Every rank needs at least one image of every global batch (BatchNorm, DDP)."""
        size, batch = self.world.size, self.cfg.batch_size
        last = n % batch or batch
        if min(batch, last) < size:
            raise ConfigError(
                f"{size} ranks cannot share global batches of {min(batch, last)} images "
                f"(train.batch_size = {batch}, {n} training images): use fewer processes or "
                "change train.batch_size"
            )

    # -- checkpoints -----------------------------------------------------------------------
    def state(self, epoch: int, partial: Partial) -> dict[str, Any]:
        """``epoch`` epochs done, plus ``partial.step`` steps of the next one."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "partial": vars(partial),
            "history": [vars(h) for h in self.history],
            "data_hash": self.data.identity.content_hash,
        }

    def save(self, epoch: int, partial: Partial) -> None:
        """Checkpoint, unless the weights went NaN/inf: the last good checkpoint is kept."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise RobenchError(
                f"the weights became NaN/inf after {epoch} epochs and {partial.step} steps; "
                f"{self._kept()}; lower train.lr or check the data"
            )
        if self.world.main:
            save_checkpoint(self.checkpoint, self.state(epoch, partial))
        distributed.barrier()  # no rank goes on (or stops) before the checkpoint is written
        self._last_save = time.monotonic()

    def resume(self) -> int:
        """Load the last checkpoint; returns the number of epochs already done (a mid-epoch
        checkpoint continues that epoch at its next step)."""
        state = distributed.on_main(lambda: load_checkpoint(self.checkpoint))
        saved, now = state.get("data_hash"), self.data.identity.content_hash
        if saved is not None and saved != now:  # a run must not go on with other images
            raise RobenchError(
                f"the training data differ from the data {self.checkpoint} was trained on "
                f"(content hash {saved}, now {now}): restore the data, or pass --force to "
                "retrain from scratch"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.start_epoch = int(state["epoch"])
            self.partial = Partial(**state.get("partial", {}))
            self.history = [EpochStats(**h) for h in state.get("history", [])]
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            first = str(err).splitlines()[0]
            raise RobenchError(
                f"checkpoint {self.checkpoint} does not fit this run's model or config ({first})"
            ) from None
        return self.start_epoch

    # -- batches ---------------------------------------------------------------------------
    def _order(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(_seed(self.seed, _SHUFFLE, epoch))
        return torch.randperm(len(self.data), generator=gen)

    def _step_seed(self, epoch: int, step: int, tag: int = _STEP) -> list[int]:
        """The seed of a step's draws of one purpose (``tag``; per rank under torchrun): by
        default its batch-stage generator."""
        rank = [self.world.rank] if self.world.size > 1 else []
        return [self.seed, tag, epoch, step, *rank]

    def _prepared(self, epoch: int, first_step: int) -> Iterator[Batch]:
        """(step, what the model sees, targets, labels) from step ``first_step`` on: the
        batches after the plugin's batch stage, whose draws come from a generator seeded by
        (seed, epoch, step, rank), so they do not depend on where or when they are made."""
        order = self._order(epoch)[first_step * self.cfg.batch_size :]
        if self._stage is not None:  # one copy an epoch: no host synchronisation per step
            order = order.to(self.device)
        size = self.cfg.batch_size
        parts = [self._my_part(order[start : start + size]) for start in range(0, len(order), size)]
        steps = range(first_step, first_step + len(parts))
        if self._stage is not None or self._workers is not None:
            tasks = [
                (s, idx, self._step_seed(epoch, s)) for s, idx in zip(steps, parts, strict=True)
            ]
            if self._workers is not None:
                yield from self._workers.batches(tasks)
            else:
                yield from map(self._stage.__getitem__, tasks)
            return
        self._dataset.epoch = epoch
        loader = DataLoader(
            self._dataset,
            batch_sampler=[idx.tolist() for idx in parts],
            num_workers=self.cfg.workers,
            worker_init_fn=_worker_init if self.cfg.workers else None,
            pin_memory=self.device.type == "cuda",
        )
        for s, (views, y) in zip(steps, loader, strict=True):  # views: (B, V, 3, H, W)
            x = views.transpose(0, 1).reshape(-1, *views.shape[2:])
            x = x.to(self.device, non_blocking=True)
            if x.dtype == torch.uint8:  # decoded images for the batch stage: to [0, 1] there
                x = x.float().div_(255)
            y = y.to(self.device, non_blocking=True)
            yield batch_stage(self.plugin, x, y, s, self._step_seed(epoch, s))

    def _my_part(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (all of it in a single process)."""
        lo, hi = distributed.shard_bounds(len(batch), self.world.rank, self.world.size)
        return batch[lo:hi]

    # -- training --------------------------------------------------------------------------
    def _loss(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.contiguous(memory_format=self.memory_format)
        # autocast's weight cache is not allowed in a CUDA graph (and a forward uses each weight
        # once: the cache saves nothing there)
        cache = self.step_kind == "eager"
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.amp, cache_enabled=cache
        ):
            logits = self.forward(x)
        logits = logits.float()
        views = list(logits.split(len(targets)))
        loss = F.cross_entropy(views[0], targets)
        extra = self.plugin.extra_loss(views)
        if extra is not None:
            loss = loss + extra
        labels = targets if targets.ndim == 1 else targets.argmax(1)
        wrong = (views[0].argmax(1) != labels).sum()
        return loss, wrong

    def _forward_backward(
        self, x: torch.Tensor, targets: torch.Tensor, step: int = 0
    ) -> torch.Tensor:
        """A step up to the optimizer: the gradients, and the epoch's sums updated on the device;
        returns the loss, detached. Nothing is read back to the host, so the captured step
        replays it as it is (single process: ``step`` only matters to DDP's loss scaling).

        The captured step keeps the ``.grad`` tensors and zeroes them in place: its graphs (one
        per batch shape) and its eager warm-ups all write to them, and the optimizer reads them
        there. The SGD update stays outside the graphs on purpose: inside, the learning rate
        would have to be a device tensor, which PyTorch's SGD reads back to the host, and a
        hand-written update would round differently; outside it is PyTorch's own multi-tensor
        update with the schedule's float (a handful of kernels), so both steps compute the same
        numbers."""
        self.optimizer.zero_grad(set_to_none=self.step_kind == "eager")
        loss, wrong = self._loss(x, targets)
        self._scaled(loss, len(targets), step).backward()
        self._loss_sum.add_(loss.detach() * len(targets))
        self._wrong_sum.add_(wrong)
        return loss.detach()

    def train_epoch(self, epoch: int, partial: Partial) -> EpochStats:
        """Train one epoch from step ``partial.step`` (0 unless resuming mid-epoch)."""
        self.model.train()
        # the checkpoint's sums are global: rank 0 carries them, the others add from zero
        carried = partial if self.world.main else Partial()
        loss_sum = self._loss_sum.fill_(carried.loss_sum)
        wrong_sum = self._wrong_sum.fill_(carried.wrong_sum)
        seen = carried.seen
        # the eager step reads the loss every 20 steps (progress, NaN guard); the captured step,
        # whose point is never to wait for the device, only at the end and at checkpoints
        check_every = 20 if self.step_kind == "eager" else 0
        start = time.perf_counter() - partial.seconds
        steps = self._prepared(epoch, partial.step)
        steps_bar = bar(
            steps,
            progress=self.progress,
            total=self.steps_per_epoch,
            initial=partial.step,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            unit="step",
            leave=False,
        )
        with torch.autograd.set_detect_anomaly(self.detect_anomaly), contextlib.closing(steps):
            for step, x, targets, y in steps_bar:
                # dropout, any torch draw; per rank under torchrun
                torch.manual_seed(_seed(*self._step_seed(epoch, step, _TORCH)))
                if self._captured is not None:
                    loss = self._captured(x, targets)
                else:
                    loss = self._forward_backward(x, targets, step)
                self.optimizer.step()
                self.scheduler.step()
                seen += len(y)
                last = step == self.steps_per_epoch - 1
                if last or (check_every and step % check_every == 0):
                    self._check_finite(loss_sum, epoch, step)
                    steps_bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}")
                if self.tracker.active and (step + 1) % self.log_every == 0:
                    lr = self.optimizer.param_groups[0]["lr"]
                    at = epoch * self.steps_per_epoch + step + 1
                    self.tracker.log({"train/loss": loss.item(), "train/lr": lr}, at)
                if not last and distributed.any_rank(self._checkpoint_due(step)):
                    self._check_finite(loss_sum, epoch, step)
                    totals = self._totals(loss_sum, wrong_sum, seen)
                    done = Partial(step + 1, *totals, time.perf_counter() - start)
                    self.save(epoch, done)
                    if distributed.any_rank(self._stop_requested):
                        raise Interrupted(
                            f"interrupted at epoch {epoch + 1}, step {step + 1}; the checkpoint "
                            f"{self.checkpoint} is saved: rerun with --resume to continue"
                        )
        seconds = time.perf_counter() - start
        loss_total, wrong_total, seen = self._totals(loss_sum, wrong_sum, seen)
        return EpochStats(
            epoch=epoch + 1,
            lr=self.optimizer.param_groups[0]["lr"],
            train_loss=loss_total / seen,
            train_error=100.0 * wrong_total / seen,
            seconds=seconds,
            images_per_s=seen / seconds,
        )

    def _scaled(self, loss: torch.Tensor, n: int, step: int) -> torch.Tensor:
        """The loss whose DDP-averaged gradient is that of the global batch mean: each rank's
        mean weighted by its share ``n / global`` (times the world size, which DDP divides by)."""
        if self.world.size == 1:
            return loss
        n_global = min(self.cfg.batch_size, len(self.data) - step * self.cfg.batch_size)
        return loss * (n * self.world.size / n_global)

    def _totals(
        self, loss_sum: torch.Tensor, wrong_sum: torch.Tensor, seen: int
    ) -> tuple[float, int, int]:
        """(loss sum, wrong count, images seen) over all ranks."""
        if self.world.size == 1:
            return loss_sum.item(), int(wrong_sum.item()), seen
        local = torch.stack([loss_sum.double(), wrong_sum.double()])
        local = torch.cat([local, local.new_tensor([seen])])
        loss_total, wrong_total, seen_total = distributed.all_reduce_sum(local).tolist()
        return loss_total, round(wrong_total), round(seen_total)

    def _checkpoint_due(self, step: int) -> bool:
        every = self.cfg.checkpoint_every_steps
        minutes = self.cfg.checkpoint_minutes
        return (
            self._stop_requested
            or (every > 0 and (step + 1) % every == 0)
            or (minutes > 0 and time.monotonic() - self._last_save >= 60 * minutes)
        )

    def _check_finite(self, loss_sum: torch.Tensor, epoch: int, step: int) -> None:
        if not torch.isfinite(loss_sum):
            raise RobenchError(
                f"training loss became NaN/inf at epoch {epoch + 1}, step {step + 1}; "
                f"{self._kept()}; lower train.lr or check the data"
            )

    def _kept(self) -> str:
        """What is left to resume from once training diverged."""
        if self.checkpoint.is_file():
            return f"the last good checkpoint is kept at {self.checkpoint}"
        return "no checkpoint was written before (nothing to resume from)"

    def fit(self, stop_after: int | None = None) -> list[EpochStats]:
        """Train from where the checkpoint left off to ``cfg.epochs`` (or to epoch
        ``stop_after``), checkpointing and logging every epoch. SIGINT, SIGTERM and SIGUSR2 (SLURM's
        time-limit warning) stop at the next step after saving a checkpoint (a second SIGINT
        aborts at once)."""
        end = self.cfg.epochs if stop_after is None else min(stop_after, self.cfg.epochs)
        with self._stop_on_signals(), contextlib.closing(self):
            for epoch in range(self.start_epoch, end):
                stats = self.train_epoch(epoch, self.partial)
                self.partial = Partial()
                self.history.append(stats)
                self.save(epoch + 1, self.partial)
                if self.world.main:
                    self._write_log()
                self.tracker.log(
                    {f"epoch/{k}": v for k, v in vars(stats).items() if k != "epoch"},
                    (epoch + 1) * self.steps_per_epoch,
                )
                say(
                    f"epoch {stats.epoch}/{self.cfg.epochs}: loss {stats.train_loss:.4f}, "
                    f"train error {stats.train_error:.2f} %, {stats.images_per_s:.0f} img/s",
                    self.progress,
                )
        return self.history

    def close(self) -> None:
        """Stop the batch workers, if any (they start again when needed)."""
        if self._workers is not None:
            self._workers.close()

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: Any) -> None:
            if self._stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_requested = True

        # SIGUSR2: SLURM's warning before a time limit (robench.cluster), wherever it reaches
        stops = [signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR2", None)]  # none on Windows
        previous = {sig: signal.signal(sig, request_stop) for sig in stops if sig is not None}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _write_log(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(vars(self.history[0])))
        writer.writeheader()
        writer.writerows(vars(h) for h in self.history)
        with atomic_write(self.log_csv) as f:
            f.write(buffer.getvalue())
