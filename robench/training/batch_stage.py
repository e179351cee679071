"""One training step's batch on the device, made in the training process or in worker processes.

For the batch path (the data set held on the device, the plugin's batch stage on the device) a
step's batch is a pure function of (step indices, step seed): :class:`BatchStage` makes it. The
trainer calls it inline, or, with ``train.batch_workers = N``, hands the steps to N spawned
worker processes through a ``DataLoader`` that returns the finished CUDA batches by CUDA IPC.

Why processes: on a GPU the batched augmentations are bound by the host. IPMix + JSD issues a
few hundred small kernels per step, and a WRN step is itself bound by its Python and dispatch
time, so in one process the two add up. A thread does not help much (the GIL serialises the
Python half of every op); a worker process has its own interpreter and its own core, so the
augmentation's host work runs beside the model's, and its GPU work fits in the gaps.

Nothing the run computes changes: each step's draws come from its own seed, and the plugin
protocol forbids global RNGs, so a worker makes exactly the batch the training process would
have made (bit-identical on the CPU, ``tests/training/test_batch_workers.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from robench.augment.base import Augmentation
from robench.errors import RobenchError

#: one step: (step, indices into the set, seed of the step's generator)
Task = tuple[int, torch.Tensor, list[int]]
#: its batch: (step, what the model sees, targets, labels)
Batch = tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]


def batch_stage(
    plugin: Augmentation, x: torch.Tensor, y: torch.Tensor, step: int, seed: list[int]
) -> Batch:
    """Step ``step``'s batch from its views ``x`` in [0, 1] and labels ``y``: the plugin's batch
    stage, if it has one, with the generator seeded by ``seed``."""
    targets = y
    if plugin.has_batch:
        x, targets = plugin.batch(x, y, np.random.default_rng(seed))
    return step, x, targets, y


class BatchStage(Dataset):
    """Task -> batch: gather the step's uint8 images on ``device``, scale to [0, 1], run the
    plugin's batch stage with the step's generator. The set goes to the device once, on first
    use (in a worker: in the worker)."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, plugin: Augmentation, device: torch.device
    ) -> None:
        self.images, self.labels, self.plugin, self.device = images, labels, plugin, device
        self._on_device: tuple[torch.Tensor, torch.Tensor] | None = None

    def __getitem__(self, task: Task) -> Batch:
        step, idx, seed = task
        if self._on_device is None:
            self._on_device = (self.images.to(self.device), self.labels.to(self.device))
        images, labels = self._on_device
        idx = idx.to(self.device, non_blocking=True)
        return batch_stage(self.plugin, images[idx].float().div_(255), labels[idx], step, seed)

    def __getstate__(self) -> dict[str, Any]:
        """Sent to workers without the device copy (a worker makes its own), and with the set
        as numpy arrays, which pickle by value through the pipe: torch would move CPU tensors
        to shared memory, which containers often cap at 64 MB (CIFAR-10 is 150 MB)."""
        state = self.__dict__ | {"_on_device": None}
        return state | {"images": self.images.cpu().numpy(), "labels": self.labels.cpu().numpy()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        tensors = {key: torch.from_numpy(state[key]) for key in ("images", "labels")}
        self.__dict__.update(state | tensors)


class _Tasks:
    """The sampler of the worker loader: this epoch's tasks, set before each pass."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)


_GUARD = (
    "its own error is printed above. Workers start with spawn, which re-imports the main "
    "script: a script that trains through the Python API must do so under "
    "`if __name__ == '__main__':`. train.batch_workers = 0 makes the batches in the training "
    "process instead"
)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # a worker's ops are small; its host time is dispatch


class BatchWorkers:
    """``workers`` spawned processes that make the batches of given tasks, in order, a few
    steps ahead (``prefetch_factor`` per worker). They start on first use and live until
    :meth:`close`, so a run starts them once, not once per epoch."""

    def __init__(self, stage: BatchStage, workers: int, prefetch_factor: int = 2) -> None:
        self.stage, self.workers, self.prefetch_factor = stage, workers, prefetch_factor
        self._tasks = _Tasks()
        self._loader: DataLoader | None = None

    def batches(self, tasks: list[Task]) -> Iterator[Batch]:
        if self._loader is None:
            self._loader = DataLoader(
                self.stage,
                batch_size=None,  # a task is a whole step
                sampler=self._tasks,
                num_workers=self.workers,
                multiprocessing_context="spawn",  # CUDA cannot be used in forked children
                persistent_workers=True,
                prefetch_factor=self.prefetch_factor,
                worker_init_fn=_worker_init,
            )
        self._tasks.tasks = tasks
        try:
            yield from self._loader
        except RuntimeError as err:
            if "exited unexpectedly" not in str(err):
                raise
            raise RobenchError(f"a batch worker process died ({err}); {_GUARD}") from None

    def close(self) -> None:
        """Stop the workers (dropping the loader drops its iterator, which shuts them down)."""
        self._loader = None
