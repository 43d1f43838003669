"""The SDE entry points: `solve_sde` (statistics, gradient modes) and the torchsde-compatible
`sdeint` and `sdeint_adjoint`."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Union

import torch

from ..adjoint.modes import (BacksolveAdjoint, CheckpointAdjoint, DirectAdjoint, GradientMode,
                             as_gradient_mode)
from ..adjoint.stochastic import stochastic_adjoint
from ..errors import InvalidInputError
from ..engine.solution import SDESolution
from .solver import SDESolver

Tensor = torch.Tensor

__all__ = ["solve_sde", "sdeint", "sdeint_adjoint"]


def solve_sde(sde: Any, y0: Tensor, ts: Union[Tensor, Sequence[float]], *, bm: Any = None,
              method: Optional[str] = None, dt: float = 1e-3, adaptive: bool = False,
              rtol: float = 1e-5, atol: float = 1e-4, dt_min: float = 1e-5,
              names: Optional[Dict[str, str]] = None,
              options: Optional[Dict[str, Any]] = None,
              gradient: Union[str, GradientMode] = "direct",
              adjoint_params: Optional[Sequence[Tensor]] = None) -> SDESolution:
    """Solve an SDE and return `SDESolution` (ys, ts, stats). Arguments as `sdeint`, plus
    ``gradient``: `DirectAdjoint` / ``'direct'`` (autograd through the steps),
    `CheckpointAdjoint` / ``'checkpoint'`` (autograd, each step's graph recomputed in the
    backward pass) or `BacksolveAdjoint` / ``'backsolve'`` (the stochastic adjoint; only its
    ``method`` applies, as ``adjoint_method`` of `sdeint_adjoint`), with ``adjoint_params``
    as there."""
    mode = _sde_gradient_mode(gradient, adjoint_params)
    solver = SDESolver(sde, y0, ts, bm=bm, method=method, dt=dt, adaptive=adaptive, rtol=rtol,
                       atol=atol, dt_min=dt_min, names=names, options=options,
                       checkpoint=isinstance(mode, CheckpointAdjoint))
    if isinstance(mode, BacksolveAdjoint):
        ys = stochastic_adjoint(solver, sde, y0, mode.method, adjoint_params)
    else:
        ys, _ = solver.run(y0)
    sol = SDESolution(ys=ys, ts=solver.ts, stats=solver.result_stats())
    if solver.step_record is not None:
        sol.step_ts, sol.step_ys = solver.step_record
    return sol


def _sde_gradient_mode(gradient: Any, adjoint_params: Optional[Sequence[Tensor]]
                       ) -> GradientMode:
    mode = as_gradient_mode(gradient)
    if isinstance(mode, BacksolveAdjoint):
        unused = [k for k in ("norm", "rtol", "atol", "step_size", "max_steps", "first_step")
                  if getattr(mode, k) is not None]
        if unused:
            raise InvalidInputError(
                f"the stochastic adjoint replays the forward grid: BacksolveAdjoint for SDEs "
                f"takes `method` only; got {unused}")
    elif not isinstance(mode, (DirectAdjoint, CheckpointAdjoint)):
        raise InvalidInputError(f"`gradient` for SDEs must be 'direct', 'checkpoint' or "
                                f"'backsolve' (or DirectAdjoint / CheckpointAdjoint / "
                                f"BacksolveAdjoint); got {gradient!r}")
    elif adjoint_params is not None:
        raise InvalidInputError("`adjoint_params` applies to gradient='backsolve' only")
    return mode


def sdeint(sde: Any, y0: Tensor, ts: Union[Tensor, Sequence[float]], *, bm: Any = None,
           method: Optional[str] = None, dt: float = 1e-3, adaptive: bool = False,
           rtol: float = 1e-5, atol: float = 1e-4, dt_min: float = 1e-5,
           names: Optional[Dict[str, str]] = None,
           options: Optional[Dict[str, Any]] = None) -> Tensor:
    """Integrate an SDE (torchsde protocol) and return ys of shape ``(len(ts), *y0.shape)``.

    Args:
        sde: object with ``f(t, y)``, ``g(t, y)``, ``noise_type`` in {diagonal, scalar,
            additive, general} and ``sde_type`` in {ito, stratonovich}; ``f_and_g``,
            ``g_prod`` or ``f_and_g_prod`` may replace or complement ``f``/``g`` (methods
            that need the diffusion matrix itself then need ``g`` or ``f_and_g``). ``t`` is
            passed as a 0-dim tensor.
        y0: initial state ``(B, *event)`` (``(B, d)`` unless the noise is diagonal).
        ts: output times, strictly increasing or strictly decreasing (backwards in time).
        bm: Brownian motion ``bm(ta, tb)`` (e.g. `BrownianInterval`); default: fresh noise
            from ``options['seed']`` (chunked counter-based sampler, or a Brownian tree
            when adaptive).
        method: ``euler``, ``milstein``, ``srk`` (Itô), ``heun``, ``midpoint``,
            ``euler_heun``, ``log_ode`` (needs a ``bm`` with 'davie' or 'foster' Lévy
            area, or none), ``reversible_heun`` (Stratonovich), ``milstein`` for both;
            default as torchsde.
        dt: step size (fixed grid: upper bound per output interval; adaptive: first step).
        adaptive, rtol, atol, dt_min: step-doubling error control (every method);
            steps never go below ``dt_min`` (they are accepted there).
        names: alternative method names, keys ``drift``, ``diffusion``,
            ``drift_and_diffusion``, ``diffusion_prod``, ``drift_and_diffusion_prod``.
        options: ``grad_free`` (milstein), ``seed``, ``chunk_size``, ``poll_every``,
            ``max_steps``, ``controller`` (a `PIDController`), ``tol`` (Brownian tree),
            ``save_steps`` (keep every step's state: `solve_sde` returns them as
            ``step_ts``/``step_ys``; fixed grid only).
    """
    return solve_sde(sde, y0, ts, bm=bm, method=method, dt=dt, adaptive=adaptive, rtol=rtol,
                     atol=atol, dt_min=dt_min, names=names, options=options).ys


def sdeint_adjoint(sde: Any, y0: Tensor, ts: Union[Tensor, Sequence[float]], *, bm: Any = None,
                   method: Optional[str] = None, adjoint_method: Optional[str] = None,
                   dt: float = 1e-3, adaptive: bool = False, rtol: float = 1e-5,
                   atol: float = 1e-4, dt_min: float = 1e-5,
                   names: Optional[Dict[str, str]] = None,
                   options: Optional[Dict[str, Any]] = None,
                   adjoint_params: Optional[Sequence[Tensor]] = None) -> Tensor:
    """`sdeint` with gradients from the stochastic adjoint (memory independent of steps).

    Gradients flow to ``y0`` and to ``adjoint_params`` (default: the parameters of ``sde``
    when it is an ``nn.Module``). ``adjoint_method`` defaults to ``reversible_heun`` (exact)
    after ``method='reversible_heun'``, ``euler`` for additive noise and ``midpoint``
    otherwise. The backward pass reuses the forward grid and Brownian increments.
    """
    return solve_sde(sde, y0, ts, bm=bm, method=method, dt=dt, adaptive=adaptive, rtol=rtol,
                     atol=atol, dt_min=dt_min, names=names, options=options,
                     gradient=BacksolveAdjoint(method=adjoint_method),
                     adjoint_params=adjoint_params).ys
