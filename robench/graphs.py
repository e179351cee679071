"""Functions replayed as CUDA graphs, one per input shape: the captured training step
(``train.step = "captured"``) and the captured inference and PGD runs of the evaluator suite
(``evaluate.forward = "captured"``).

Why: a WRN-40-2 step at batch 128 is bound by the host, not by the GPU. Its few hundred kernels
are launched one Python call at a time, and the host takes longer to launch them than the GPU
takes to run them (BENCHMARKS.md: the 1-view and the 3-view steps ran at about the same rate;
inference ran at 27,000 images/s at batch 100 and 138,000 at batch 1000). Replaying a captured
graph launches them all with one call.

How (PyTorch's whole-network capture, "CUDA Graphs" in the CUDA semantics notes, by hand with
``torch.cuda.CUDAGraph``): the function takes tensors and returns one, and never reads a value
back to the host. The first call with a given set of input shapes runs eagerly on a side stream
(the warm-up a capture needs, and a real call), the second is captured, and every later one
copies its inputs into the graph's fixed input buffers and replays it; so an uneven last batch
gets a graph of its own. The returned tensor is the graph's fixed output: the next call with
the same shapes overwrites it, so a caller keeps a copy of what it needs.

On the CPU there is no graph to capture: a "replay" runs the same function on the same fixed
input buffers into the same output tensor, which is what the CPU tests compare with the eager
function, bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from robench.errors import first_line

#: what is captured: tensors in, one tensor out; no host reads, shapes from the inputs
Function = Callable[..., torch.Tensor]


class _Replay:
    """One input shape's call on fixed input buffers: a CUDA graph, or on the CPU the function."""

    def __init__(self, fn: Function, inputs: tuple[torch.Tensor, ...], pool: Any = None) -> None:
        self.fn = fn
        self.inputs = tuple(t.clone() for t in inputs)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: torch.Tensor | None = None
        if inputs[0].device.type == "cuda":
            self.graph = torch.cuda.CUDAGraph()
            # records, runs nothing; "thread_local": another thread's CUDA calls (a DataLoader's
            # pin-memory thread) neither break the capture nor fail themselves
            with torch.cuda.graph(self.graph, pool=pool, capture_error_mode="thread_local"):
                self.output = fn(*self.inputs)

    def __call__(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        for buffer, value in zip(self.inputs, inputs, strict=True):
            buffer.copy_(value)
        if self.graph is not None:
            self.graph.replay()
        elif self.output is None:
            self.output = self.fn(*self.inputs)
        else:  # one output tensor, overwritten by every call, as a graph's
            self.output.copy_(self.fn(*self.inputs))
        return self.output


class Captured:
    """``fn`` replayed as one graph per input shape (see the module docstring). A shape whose
    capture fails (a model or plugin loss that reads a value back to the host, say) then runs
    eagerly, with one warning: the same numbers, only slower. ``what`` names the setting in
    that warning."""

    def __init__(self, fn: Function, what: str) -> None:
        self.fn, self.what = fn, what
        self._warm: set[tuple] = set()
        self._failed: set[tuple] = set()
        self._replays: dict[tuple, _Replay] = {}
        # one memory pool for all shapes' graphs: they replay one at a time on one stream, and
        # what one graph leaves alive (its output) is never handed to another
        self._pool: Any = None

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        key = tuple((t.shape, t.dtype) for t in inputs)
        if key not in self._warm:  # the shape's first call: eager, the capture's warm-up
            self._warm.add(key)
            return self._warm_up(inputs)
        if key not in self._replays and key not in self._failed:
            try:
                if self._pool is None and inputs[0].device.type == "cuda":
                    self._pool = torch.cuda.graph_pool_handle()
                self._replays[key] = _Replay(self.fn, inputs, self._pool)
            except RuntimeError as err:
                self._failed.add(key)
                warnings.warn(
                    f"{self.what} = 'captured': the call could not be captured "
                    f"({first_line(err)}); inputs of shape {tuple(inputs[0].shape)} run eagerly "
                    f"(same numbers, slower); {self.what} = 'eager' skips the attempt",
                    stacklevel=2,
                )
        replay = self._replays.get(key)
        return self.fn(*inputs) if replay is None else replay(inputs)

    def _warm_up(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The eager call; on CUDA on a side stream, as a capture needs its work warmed up."""
        device = inputs[0].device
        if device.type != "cuda":
            return self.fn(*inputs)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            output = self.fn(*inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        return output
