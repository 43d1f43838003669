"""CUDA-graph capture of the fixed-grid loop's chunks (CUDA only; untested on hardware here).

`GraphedChunk` wraps a chunk function ``fn(ts, hs, y, state, None)`` whose inputs are all
tensors (an ODE chunk: times and steps are tensors). The first call for an input structure
warms ``fn`` up on a side stream and captures one replay of it into a `torch.cuda.CUDAGraph`
on static copies of the inputs; every later chunk copies its inputs into those buffers and
replays the graph: ``unroll`` steps for one launch, with no Python or dispatch cost.

The replay writes the same output buffers each time, so the outputs are cloned before they
are handed on. A graph holds values only: captures run under ``torch.no_grad()`` (the
compiled path refuses ``cuda_graphs=True`` with autograd enabled). SDE chunks take their
step sizes as Python floats, which a capture would freeze, so they are not graphed.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import torch

Tensor = torch.Tensor

__all__ = ["GraphedChunk"]


class _Capture(NamedTuple):
    graph: Any
    inputs: Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]
    ys: List[Tensor]
    state: Optional[Tensor]


class GraphedChunk:
    """Replays of ``fn`` captured in CUDA graphs, one per input structure (shapes, dtype,
    whether a carried state is given)."""

    WARMUP = 3  # side-stream calls before capture (compilation, allocator warm-up)

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.captures: Dict[tuple, _Capture] = {}

    def __call__(self, ts: Tensor, hs: Tensor, y: Tensor, state: Optional[Tensor],
                 controls: Any = None) -> Tuple[List[Tensor], Optional[Tensor]]:
        key = (tuple(ts.shape), tuple(y.shape), y.dtype, y.device,
               None if state is None else tuple(state.shape))
        cap = self.captures.get(key)
        if cap is None:
            cap = self.captures[key] = self._capture(ts, hs, y, state)
        for dst, src in zip(cap.inputs, (ts, hs, y, state)):
            if dst is not None:
                dst.copy_(src)
        cap.graph.replay()
        return [v.clone() for v in cap.ys], None if cap.state is None else cap.state.clone()

    def _capture(self, ts: Tensor, hs: Tensor, y: Tensor, state: Optional[Tensor]) -> _Capture:
        inputs = (ts.clone(), hs.clone(), y.clone(), None if state is None else state.clone())
        side = torch.cuda.Stream(device=y.device)
        side.wait_stream(torch.cuda.current_stream(y.device))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self.fn(*inputs, None)
        torch.cuda.current_stream(y.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            ys, out_state = self.fn(*inputs, None)
        return _Capture(graph, inputs, list(ys), out_state)
