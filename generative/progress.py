"""Progress bars with an ETA for long model evaluations (sampling, likelihood, inpainting).

`eval_progress` watches a model's network evaluations through a forward hook: each call's
time argument ``t`` says how far the current solve has come between its start and end
times, and a solve that jumps back to its start is the next chunk of samples. This works for
every sampler and ODE method (fixed-step or adaptive) without their cooperation. Bars are
drawn only where asked (the CLI: stderr is a terminal and no ``--no-progress``).
"""
from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Tuple

import torch
from torch import nn

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = ["eval_progress", "progress_wanted", "time_span", "evaluated_module"]


def progress_wanted(disabled: bool = False) -> bool:
    """Progress bars are drawn when not ``disabled`` and stderr is a terminal."""
    return not disabled and bool(getattr(sys.stderr, "isatty", lambda: False)())


def evaluated_module(model: nn.Module) -> nn.Module:
    """The module called once per network evaluation with ``(x, t, ...)``: a score model
    itself, a CNF's vector field, a flow-matching velocity net itself."""
    if hasattr(model, "sde"):  # ScoreNet: forward(x, t, y)
        return model
    net = getattr(model, "net", None)  # CNF: its ODENet(x, t)
    return net if isinstance(net, nn.Module) and hasattr(model, "event_shape") else model


def time_span(model: nn.Module, spec: ModelSpec, *, sampling: bool,
              t_min: Optional[float] = None) -> Tuple[float, float]:
    """``(t_start, t_end)`` of a sampling (noise -> data) or likelihood (data -> noise) solve
    of a loaded model of any kind (``t_min``: a score model's end time, default its SDE's)."""
    if hasattr(model, "sde"):
        lo, hi = float(t_min if t_min is not None else model.sde.t_min), float(model.sde.T)
    elif spec.kind == "ffjord":
        lo, hi = 0.0, float(getattr(model, "T", 1.0))
    else:
        from .flow_matching import end_times
        lo, hi = end_times(spec.options.path, spec.options.t_min)
    return (hi, lo) if sampling else (lo, hi)


def _first_time(args: Tuple[Any, ...], kwargs: Mapping[str, Any]) -> Optional[float]:
    t = args[1] if len(args) > 1 else kwargs.get("t")
    if isinstance(t, torch.Tensor) and t.numel():
        return float(t.reshape(-1)[0])
    return float(t) if isinstance(t, (int, float)) else None


@contextlib.contextmanager
def eval_progress(module: nn.Module, span: Tuple[float, float], *, chunks: int = 1,
                  desc: str = "sampling", enabled: bool = True) -> Iterator[None]:
    """A tqdm bar (percent of ``chunks`` solves over ``span``, elapsed < remaining, network
    evaluations so far) while the block runs, left at 100% when it completes; nothing when
    not ``enabled``."""
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    t0, t1 = span
    width = (t1 - t0) or 1.0
    state = {"chunk": 0, "frac": 0.0, "calls": 0}
    total = 100.0 * max(chunks, 1)
    bar = tqdm(total=total, desc=desc, unit="%", dynamic_ncols=True, leave=True,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")

    def hook(_mod: nn.Module, args: Tuple[Any, ...], kwargs: Mapping[str, Any],
             _out: Any) -> None:
        t = _first_time(args, kwargs)
        state["calls"] += 1
        if t is None:
            return
        frac = min(max((t - t0) / width, 0.0), 1.0)
        if frac < state["frac"] - 0.5 and state["chunk"] + 1 < chunks:  # the next solve
            state["chunk"] += 1
            state["frac"] = 0.0
        state["frac"] = max(state["frac"], frac)
        done = 100.0 * (state["chunk"] + state["frac"])
        if done > bar.n:
            bar.update(done - bar.n)
        if state["calls"] % 10 == 1:
            bar.set_postfix_str(f"{state['calls']} net calls", refresh=False)

    handle = module.register_forward_hook(hook, with_kwargs=True)
    try:
        yield
        if bar.n < total:
            bar.update(total - bar.n)
        bar.set_postfix_str(f"{state['calls']} net calls", refresh=True)  # the final line
    finally:
        handle.remove()
        bar.close()
