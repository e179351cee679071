"""The captured training step (``train.step = "captured"``): forward, loss, backward and the
running sums replayed as one CUDA graph per batch shape.

Why: a WRN-40-2 step at batch 128 is bound by the host, not by the GPU. Its few hundred kernels
are launched one Python call at a time, and the host takes longer to launch them than the GPU
takes to run them (BENCHMARKS.md: the 1-view and the 3-view steps ran at about the same rate).
Replaying a captured graph launches them all with one call.

How (PyTorch's whole-network capture, "CUDA Graphs" in the CUDA semantics notes, by hand with
``torch.cuda.CUDAGraph``): the step is a function of its two input tensors that never reads a
value back to the host. The first step of each batch shape runs eagerly on a side stream (the
warm-up a capture needs, and a real training step), the second is captured and every later one
copies its batch into the graph's fixed input buffers and replays it. So the uneven last batch of
an epoch gets its own graph and the recipe is unchanged. The gradients live in the parameters'
``.grad`` tensors, which the step zeroes and fills in place, so every graph and every eager call
shares them, and the optimizer, run eagerly after each step, reads them there.

The SGD update stays outside the graph on purpose: inside it the learning rate would have to be
a device tensor, and PyTorch's SGD reads a tensor learning rate back to the host; a hand-written
update would round differently. Outside, it is PyTorch's own multi-tensor update with the
schedule's float, a handful of kernels: the captured and the eager step compute the same numbers.

On the CPU there is no graph to capture: the step runs the same function on the same fixed
buffers, which is what the CPU tests compare with the eager step, bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from robench.errors import first_line

#: the step: (views, targets) -> its loss, detached; no host reads, shapes from its inputs
StepFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _Replay:
    """One batch shape's step on fixed input buffers: a CUDA graph, or on the CPU the function."""

    def __init__(self, fn: StepFunction, x: torch.Tensor, targets: torch.Tensor) -> None:
        self.fn = fn
        self.inputs = (x.clone(), targets.clone())
        self.graph: torch.cuda.CUDAGraph | None = None
        if x.device.type == "cuda":
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):  # records; nothing runs until replay
                self.loss = fn(*self.inputs)

    def __call__(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.inputs[0].copy_(x)
        self.inputs[1].copy_(targets)
        if self.graph is None:
            return self.fn(*self.inputs)
        self.graph.replay()
        return self.loss


class CapturedStep:
    """``fn`` replayed as one graph per input shape (see the module docstring). A shape whose
    capture fails (a plugin's loss that reads a value to the host, say) then runs eagerly, with
    one warning: the run goes on and computes the same numbers, only slower."""

    def __init__(self, fn: StepFunction) -> None:
        self.fn = fn
        self._warm: set[tuple] = set()
        self._failed: set[tuple] = set()
        self._replays: dict[tuple, _Replay] = {}

    def __call__(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        key = (x.shape, x.dtype, targets.shape, targets.dtype)
        if key not in self._warm:  # the shape's first step: eager, the capture's warm-up
            self._warm.add(key)
            return self._warm_up(x, targets)
        if key not in self._replays and key not in self._failed:
            try:
                self._replays[key] = _Replay(self.fn, x, targets)
            except RuntimeError as err:
                self._failed.add(key)
                warnings.warn(
                    f"train.step = 'captured': the step could not be captured "
                    f"({first_line(err)}); batches of shape {tuple(x.shape)} run eagerly (same "
                    "numbers, slower); train.step = 'eager' skips the attempt",
                    stacklevel=2,
                )
        replay = self._replays.get(key)
        return self.fn(x, targets) if replay is None else replay(x, targets)

    def _warm_up(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The eager step; on CUDA on a side stream, as a capture needs its work warmed up."""
        if x.device.type != "cuda":
            return self.fn(x, targets)
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            loss = self.fn(x, targets)
        torch.cuda.current_stream(x.device).wait_stream(side)
        return loss
