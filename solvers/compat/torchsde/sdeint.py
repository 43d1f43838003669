"""torchsde's `sdeint` and `sdeint_adjoint` on `solvers.sde.SDESolver` and the stochastic
adjoint: torchsde's signature (``bm`` positional), contract checks and errors (ValueError),
warnings, ``names``, ``logqp`` and ``extra`` / ``extra_solver_state``, and its return
values."""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from ...adjoint.stochastic import stochastic_adjoint
from ...errors import FunctionOutputError, InvalidInputError, describe
from ...sde.methods import default_method
from ...sde.solver import SDESolver
from .base_sde import NAME_KEYS, LogqpSDE, renamed
from .settings import METHODS, NOISE_TYPES, SDE_TYPES

Tensor = torch.Tensor

__all__ = ["sdeint", "sdeint_adjoint"]

_OUR_OPTIONS = ("grad_free", "chunk_size", "poll_every", "max_steps", "seed", "controller",
                "tol", "save_steps")


def _warn_unused(unused: Dict[str, Any], where: str) -> None:
    if unused:
        warnings.warn(f"{where}: Unexpected arguments {unused}")


def _check_types(sde: Any) -> None:
    for attr, valid in (("noise_type", NOISE_TYPES), ("sde_type", SDE_TYPES)):
        if not hasattr(sde, attr):
            raise InvalidInputError(f"sde does not have the attribute {attr}.")
        if getattr(sde, attr) not in valid:
            raise InvalidInputError(f"Expected {attr.replace('_', ' ')} in {valid}, but found "
                                    f"{getattr(sde, attr)}.")


def _check_ts(ts: Any, y0: Tensor) -> Tensor:
    if not torch.is_tensor(ts):
        if not isinstance(ts, (tuple, list)) or not all(isinstance(t, (float, int)) for t in ts):
            raise InvalidInputError(
                "Evaluation times `ts` must be a 1-D Tensor or list/tuple of floats.")
        ts = torch.tensor(ts, dtype=y0.dtype, device=y0.device)
    if ts.dim() != 1 or not bool((ts[1:] > ts[:-1]).all()):
        raise InvalidInputError("Evaluation times `ts` must be strictly increasing.")
    return ts


def _contract(sde: Any, y0: Any, ts: Any, bm: Any, method: Optional[str], adaptive: bool,
              names: Optional[Dict[str, str]], logqp: bool) -> Tuple[Any, Tensor, Tensor, str]:
    """torchsde's checks; returns the SDE to solve, y0 (log-ratio appended for ``logqp``),
    ts as a tensor and the method name."""
    if names is not None:
        unknown = set(names) - set(NAME_KEYS) - {"diffusion_prod"}
        if unknown:
            raise InvalidInputError(f"`names` keys must be among {sorted(NAME_KEYS)}; got "
                                    f"{sorted(unknown)}")
    sde = renamed(sde, names)
    _check_types(sde)
    if not torch.is_tensor(y0):
        raise InvalidInputError("`y0` must be a torch.Tensor.")
    if y0.dim() != 2:
        raise InvalidInputError("`y0` must be a 2-dimensional tensor of shape (batch, channels).")
    if logqp:
        sde = LogqpSDE(sde)
        y0 = torch.cat((y0, y0.new_zeros(size=(y0.size(0), 1))), dim=1)
    if method is None:
        method = default_method(sde.sde_type, sde.noise_type)
    if method not in METHODS or method == METHODS.adjoint_reversible_heun:
        raise InvalidInputError(f"Expected method in {METHODS}, but found {method}.")
    ts = _check_ts(ts, y0)
    if bm is not None and len(getattr(bm, "shape", ())) != 2:
        raise InvalidInputError("`bm` must be of shape (batch, noise_channels).")
    if adaptive and method == METHODS.euler and sde.noise_type != NOISE_TYPES.additive:
        warnings.warn("Numerical solution is not guaranteed to converge to the correct solution "
                      "when using adaptive time-stepping with the Euler--Maruyama method with "
                      "non-additive noise.")
    return sde, y0, ts, method


def _no_grad(**values: Any) -> None:
    for name, v in values.items():
        if torch.is_tensor(v) and v.requires_grad:
            raise InvalidInputError(f"Argument {name} must not require gradient.")


def _solver(sde: Any, y0: Tensor, ts: Tensor, bm: Any, method: str, dt: Any, adaptive: bool,
            rtol: Any, atol: Any, dt_min: Any, options: Optional[Dict[str, Any]],
            extra_solver_state: Optional[Sequence[Tensor]]) -> SDESolver:
    opts = {k: v for k, v in dict(options or {}).items() if k in _OUR_OPTIONS}
    try:
        solver = SDESolver(sde, y0, ts, bm=bm, method=method, dt=float(dt), adaptive=adaptive,
                           rtol=float(rtol), atol=float(atol), dt_min=float(dt_min),
                           options=opts)
    except FunctionOutputError as err:    # torchsde reports bad shapes as ValueError
        raise InvalidInputError(str(err)) from err
    if extra_solver_state is not None and solver.method.has_extra:
        f, g, z = extra_solver_state            # torchsde's order; ours is (z, f, g)
        solver.extra0 = (z, f, g)
    return solver


def _extra_state(solver: SDESolver) -> Tuple[Tensor, ...]:
    path = solver.last_path
    if path is None or not path.final_extra:
        return ()
    z, f, g = path.final_extra
    return (f, g, z)


def _parse_return(y0: Tensor, ys: Tensor, solver: SDESolver, extra: bool, logqp: bool) -> Any:
    out: Tuple[Tensor, ...] = (ys,)
    if logqp:
        ys, log_ratio = ys[..., :-1], ys[..., -1]
        out = (ys, log_ratio[1:] - log_ratio[:-1])
    if extra:
        out += (_extra_state(solver),)
    return out[0] if len(out) == 1 else out


def sdeint(sde: Any, y0: Tensor, ts: Any, bm: Any = None, method: Optional[str] = None,
           dt: Any = 1e-3, adaptive: bool = False, rtol: Any = 1e-5, atol: Any = 1e-4,
           dt_min: Any = 1e-5, options: Optional[Dict[str, Any]] = None,
           names: Optional[Dict[str, str]] = None, logqp: bool = False, extra: bool = False,
           extra_solver_state: Optional[Sequence[Tensor]] = None, **unused_kwargs: Any) -> Any:
    """torchsde's ``sdeint``: ys of shape ``(len(ts), batch, d)``; with ``logqp`` also the
    log-ratio increments ``(len(ts) - 1, batch)``; with ``extra`` also the solver's final
    extra state (reversible Heun's ``(f, g, z)``, else ``()``)."""
    _warn_unused(unused_kwargs, "`sdeint`")
    sde, y0_, ts, method = _contract(sde, y0, ts, bm, method, adaptive, names, logqp)
    _no_grad(ts=ts, dt=dt, rtol=rtol, atol=atol, dt_min=dt_min)
    solver = _solver(sde, y0_, ts, bm, method, dt, adaptive, rtol, atol, dt_min, options,
                     extra_solver_state)
    ys, _ = solver.run(y0_)
    return _parse_return(y0_, ys, solver, extra, logqp)


def _adjoint_method(method: str, adjoint_method: Optional[str], sde_type: str,
                    noise_type: str) -> Optional[str]:
    """Our backward method for torchsde's ``adjoint_method``. Ours integrates the adjoint in
    Stratonovich form on the forward grid: torchsde's Itô choices (euler, milstein, srk)
    become midpoint (euler stays for additive noise, where both forms agree)."""
    if adjoint_method is None:
        return "reversible_heun" if method == METHODS.reversible_heun else None
    if adjoint_method == METHODS.adjoint_reversible_heun:
        if method != METHODS.reversible_heun:
            raise InvalidInputError(
                f"adjoint_method='adjoint_reversible_heun' needs method='reversible_heun'; got "
                f"method={method!r}")
        return "reversible_heun"
    if adjoint_method == METHODS.log_ode_midpoint:
        raise InvalidInputError(
            "Log-ODE schemes cannot be used for adjoint SDEs; use a different adjoint_method.")
    if adjoint_method not in METHODS:
        raise InvalidInputError(f"Expected adjoint_method in {METHODS}, but found "
                                f"{adjoint_method}.")
    if adjoint_method in ("midpoint", "heun"):
        return adjoint_method
    if adjoint_method == "euler" and noise_type == NOISE_TYPES.additive:
        return "euler"
    return "heun" if adjoint_method in ("euler_heun", "reversible_heun") else "midpoint"


def sdeint_adjoint(sde: Any, y0: Tensor, ts: Any, bm: Any = None, method: Optional[str] = None,
                   adjoint_method: Optional[str] = None, dt: Any = 1e-3,
                   adaptive: bool = False, adjoint_adaptive: bool = False, rtol: Any = 1e-5,
                   adjoint_rtol: Any = 1e-5, atol: Any = 1e-4, adjoint_atol: Any = 1e-4,
                   dt_min: Any = 1e-5, options: Optional[Dict[str, Any]] = None,
                   adjoint_options: Optional[Dict[str, Any]] = None, adjoint_params: Any = None,
                   names: Optional[Dict[str, str]] = None, logqp: bool = False,
                   extra: bool = False, extra_solver_state: Optional[Sequence[Tensor]] = None,
                   **unused_kwargs: Any) -> Any:
    """torchsde's ``sdeint_adjoint``: `sdeint` with gradients for ``y0`` and
    ``adjoint_params`` (default: ``sde.parameters()``) from the stochastic adjoint. The
    backward pass replays the forward grid and Brownian path, so ``adjoint_adaptive``,
    ``adjoint_rtol``, ``adjoint_atol`` and ``adjoint_options`` are accepted and unused;
    ``adjoint_reversible_heun`` (after ``reversible_heun``) is exact."""
    _warn_unused(unused_kwargs, "`sdeint_adjoint`")
    if adjoint_params is None and not isinstance(sde, nn.Module):
        raise InvalidInputError(
            "`sde` must be an instance of nn.Module to specify the adjoint parameters; "
            "alternatively they can be specified explicitly via the `adjoint_params` argument. "
            "If there are no parameters then it is allowable to set `adjoint_params=()`.")
    params = tuple(sde.parameters()) if adjoint_params is None else tuple(adjoint_params)
    if not all(torch.is_tensor(p) for p in params):
        raise InvalidInputError(f"`adjoint_params` must be tensors; got {describe(params)}")
    params = tuple(p for p in params if p.requires_grad)
    sde_, y0_, ts, method = _contract(sde, y0, ts, bm, method, adaptive, names, logqp)
    _no_grad(ts=ts, dt=dt, rtol=rtol, adjoint_rtol=adjoint_rtol, atol=atol,
             adjoint_atol=adjoint_atol, dt_min=dt_min)
    if method == METHODS.reversible_heun and adjoint_method != METHODS.adjoint_reversible_heun:
        warnings.warn(f"method={method!r}, but adjoint_method!="
                      f"{METHODS.adjoint_reversible_heun!r}.")
    ours = _adjoint_method(method, adjoint_method, sde_.sde_type, sde_.noise_type)
    solver = _solver(sde_, y0_, ts, bm, method, dt, adaptive, rtol, atol, dt_min, options,
                     extra_solver_state)
    ys = stochastic_adjoint(solver, sde_, y0_, ours, params)
    return _parse_return(y0_, ys, solver, extra, logqp)
