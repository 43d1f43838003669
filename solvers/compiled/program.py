"""Compiled programs: a `Solver`'s steps under `torch.compile`, cached per problem.

`FixedProgram` holds two compiled functions over one solver and its terms: ``chunk`` runs
``unroll`` steps of a fixed grid in one graph, ``one`` a single step with its full
`StepResult` (remainders, and steps whose outputs need the dense stages). Programs are kept
in a small LRU cache keyed by the problem (the function, the method, dtype, device, the
options), so repeated solves of one problem compile once.

Each program compiles *copies* of its functions with their own code objects
(`compile_fresh`): dynamo keys its cache and its recompile limit (8 by default) by code
object, so without the copy every problem of the library would share one limit and, past
eight problems, silently fall back to eager.
"""
from __future__ import annotations

import types
import warnings
from collections import OrderedDict
from typing import Any, Callable, Hashable, List, Optional, Sequence, Tuple

import torch

from ..engine.solver import Solver, StepResult
from ..errors import InvalidInputError
from .options import CompileOptions

Tensor = torch.Tensor

__all__ = ["compile_fresh", "FixedProgram", "cached_program", "clear_cache", "CACHE_SIZE"]

#: programs kept (each holds its function and compiled graphs alive)
CACHE_SIZE = 16
_CACHE: "OrderedDict[Hashable, Any]" = OrderedDict()


def compile_fresh(fn: Callable, options: CompileOptions) -> Callable:
    """`torch.compile` of a copy of ``fn`` with its own code object (its own dynamo cache)."""
    # srk's tableau preparation is an lru_cache'd pure function, which dynamo traces through
    # (and says so once per call site)
    warnings.filterwarnings("ignore", message=r"Dynamo detected a call to a `functools\."
                            r"lru_cache`-wrapped function")
    clone = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                               fn.__defaults__, fn.__closure__)
    compiled = torch.compile(clone, **options.compile_kwargs())

    def call(*args: Any) -> Any:
        try:
            return compiled(*args)
        except torch._dynamo.exc.FailOnRecompileLimitHit as err:
            raise InvalidInputError(
                "`compile=True`: the compiled step was recompiled at every call until "
                "dynamo's recompile limit: the function (f, the SDE, the score) reads Python "
                "state that changes between calls, e.g. a call counter; keep such state in "
                "tensors, or solve eagerly") from err
    return call


def cached_program(key: Hashable, build: Callable[[], Any]) -> Any:
    """The program for ``key`` from the cache, built on a miss (unhashable keys: built
    every time)."""
    try:
        prog = _CACHE.get(key)
    except TypeError:
        return build()
    if prog is None:
        prog = _CACHE[key] = build()
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return prog


def clear_cache() -> None:
    """Forget every compiled program."""
    _CACHE.clear()


class FixedProgram:
    """A solver's fixed-grid steps, compiled.

    ``chunk(ts, hs, y, state, controls)`` runs ``len(hs)`` steps from times ``ts`` (a 1-D
    tensor; expanded to ``(rows,)`` per sample) with steps ``hs`` (a tensor for ODEs, Python
    floats for SDEs) and per-step ``controls`` (None, or the Brownian increments), returning
    the state after every step and the carried solver state. ``one(t, h, y, state,
    control)`` is one step's `StepResult`. ``terms`` must not count calls on the host inside
    the graph (a host counter would be a guard: one recompile per call); ODE calls are
    counted by the driver, SDE terms count in tensors.
    """

    def __init__(self, solver: Solver, terms: Any, options: CompileOptions,
                 rows: Optional[int]) -> None:
        self.solver, self.terms, self.unroll = solver, terms, options.unroll

        def chunk(ts: Tensor, hs: Sequence[Any], y: Tensor, state: Any,
                  controls: Optional[Sequence[Any]]) -> Tuple[List[Tensor], Any]:
            ys = []
            for i in range(len(hs)):
                t0 = ts[i] if rows is None else ts[i].expand(rows)
                res = solver.step(terms, t0, hs[i], y, state,
                                  None if controls is None else controls[i])
                y, state = res.y1, res.state
                ys.append(y)
            return ys, state

        def one(t: Tensor, h: Any, y: Tensor, state: Any, control: Any) -> StepResult:
            return solver.step(terms, t, h, y, state, control)

        self.chunk = compile_fresh(chunk, options)
        self.one = compile_fresh(one, options)
        self.graphed: Optional[Any] = None   # the chunk's CUDA-graph replays (graphs.py)
