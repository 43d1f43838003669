"""Continuous adjoint ("backsolve") for ODEs: `odeint_adjoint` and
``solve_ode(..., gradient='backsolve')``.

The forward pass solves without building a graph and keeps only the outputs. The backward
pass integrates the augmented system ``[y, a, a_t, a_θ]`` from the last output time to the
first (Chen et al. 2018; torchdiffeq's formulation), restarting ``y`` from the stored
outputs at each output time and adding that time's incoming gradient to ``a``:

    dy/dt = f(t, y),   da/dt = -aᵀ ∂f/∂y,   da_t/dt = -aᵀ ∂f/∂t,   da_θ/dt = -aᵀ ∂f/∂θ.

Memory is independent of the number of steps. ``norm='seminorm'`` leaves the ``a_t`` and
``a_θ`` channels out of error control (Kidger, Chen & Lyons 2021), which usually cuts the
backward NFE. Step-size control is never differentiated.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from .controller import ErrorNorm, PIDController
from .errors import FunctionOutputError, InvalidInputError, describe
from .ode import ODESolution, State, _Flat, parse_options, solve_ode

Tensor = torch.Tensor

__all__ = ["odeint_adjoint", "solve_backsolve"]

_ADJOINT_OPTION_NAMES = ("method", "rtol", "atol", "norm", "step_size", "max_steps",
                         "first_step")


def _collect_params(func: Callable, adjoint_params: Optional[Sequence[Tensor]]) -> List[Tensor]:
    if adjoint_params is None:
        params = list(func.parameters()) if isinstance(func, nn.Module) else []
    else:
        params = list(adjoint_params)
        for i, p in enumerate(params):
            if not isinstance(p, torch.Tensor):
                raise InvalidInputError(
                    f"`adjoint_params` must contain tensors only; item {i} is {describe(p)}")
    return [p for p in params if p.requires_grad]


def _check_adjoint_options(opts: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    opts = dict(opts or {})
    unknown = sorted(set(opts) - set(_ADJOINT_OPTION_NAMES))
    if unknown:
        raise InvalidInputError(f"unknown `adjoint_options` {unknown}; valid options are "
                                f"{sorted(_ADJOINT_OPTION_NAMES)}")
    norm = opts.get("norm", "default")
    if not (norm in ("default", "seminorm") or callable(norm)):
        raise InvalidInputError(
            f"`adjoint_options['norm']` must be 'default', 'seminorm' or a callable; got {norm!r}")
    return opts


class _Augmented:
    """The augmented vector field on the flat state ``[y, a, a_t, a_θ...]``."""

    def __init__(self, f: Callable[[Tensor, Tensor], Tensor], n: int, shape: torch.Size,
                 params: List[Tensor], need_t: bool) -> None:
        self.f, self.n, self.shape, self.params, self.need_t = f, n, shape, params, need_t
        self.sizes = [n, n, 1] + [p.numel() for p in params]

    def __call__(self, t: Tensor, z: Tensor) -> Tensor:
        n = self.n
        with torch.enable_grad():
            y = z[:n].reshape(self.shape).detach().requires_grad_(True)
            a = z[n:2 * n].reshape(self.shape)
            tt = t.detach().requires_grad_(self.need_t)
            fy = self.f(tt, y)
            inputs = [y] + ([tt] if self.need_t else []) + self.params
            grads = (torch.autograd.grad(fy, inputs, grad_outputs=-a, allow_unused=True)
                     if fy.requires_grad else (None,) * len(inputs))  # f independent of all
        gy = grads[0]
        gt = grads[1] if self.need_t else None
        gp = grads[2:] if self.need_t else grads[1:]
        parts = [fy.reshape(-1), _or_zeros(gy, y).reshape(-1),
                 _or_zeros(gt, t).reshape(1)]
        parts += [_or_zeros(g, p).reshape(-1) for g, p in zip(gp, self.params)]
        return torch.cat([p.to(z.dtype) for p in parts])


def _or_zeros(g: Optional[Tensor], like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g


class _Backsolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fwd: Dict[str, Any], y0: Tensor, t: Tensor, *params: Tensor) -> Tensor:
        with torch.no_grad():
            sol = solve_ode(fwd["f"], y0, t, **fwd["solve"])
        fwd["stats"].update(sol.stats)
        ctx.fwd = fwd
        ys = sol.ys
        ctx.save_for_backward(t, ys, *params)
        return ys

    @staticmethod
    def backward(ctx, grad_ys: Tensor):
        fwd = ctx.fwd
        t, ys, *params = ctx.saved_tensors
        f = fwd["f"]
        need_t = ctx.needs_input_grad[2]
        shape = ys.shape[1:]
        n = int(ys[0].numel())
        aug = _Augmented(f, n, shape, list(params), need_t)
        opts = fwd["adjoint"]
        norm_kind = opts.get("norm", "default")
        if callable(norm_kind):
            norm = norm_kind
        elif norm_kind == "seminorm":
            seg = ErrorNorm(False, fwd["y_sizes"] * 2)
            norm = lambda z: seg(z[:2 * n])  # noqa: E731
        else:
            norm = ErrorNorm(False, fwd["y_sizes"] * 2 + aug.sizes[2:])
        solve_kw = dict(method=opts.get("method", fwd["solve"]["method"]),
                        rtol=opts.get("rtol", fwd["solve"]["rtol"]),
                        atol=opts.get("atol", fwd["solve"]["atol"]),
                        step_size=opts.get("step_size", fwd["solve"]["step_size"]),
                        max_steps=opts.get("max_steps", fwd["solve"]["max_steps"]),
                        first_step=opts.get("first_step"),
                        controller=fwd["solve"]["controller"], error_norm=norm)
        a = torch.zeros(shape, dtype=ys.dtype, device=ys.device)
        a_t = torch.zeros((), dtype=ys.dtype, device=ys.device)
        a_p = [torch.zeros_like(p) for p in params]
        t_grads = torch.zeros_like(t) if need_t else None
        nfe = 0
        with torch.no_grad():
            for i in range(t.shape[0] - 1, 0, -1):
                a = a + grad_ys[i]
                if need_t:
                    dl_dt = (f(t[i], ys[i]) * grad_ys[i]).sum()
                    t_grads[i] = dl_dt
                    a_t = a_t - dl_dt
                z = torch.cat([ys[i].reshape(-1), a.reshape(-1), a_t.reshape(1)]
                              + [g.reshape(-1) for g in a_p])
                sol = solve_ode(aug, z, t[i - 1:i + 1].flip(0), **solve_kw)
                nfe += int(sol.stats["nfe"])
                z = sol.ys[-1]
                parts = torch.split(z, aug.sizes)
                a = parts[1].reshape(shape)
                a_t = parts[2].reshape(())
                a_p = [g.reshape(p.shape) for g, p in zip(parts[3:], params)]
            a = a + grad_ys[0]
            if need_t:
                t_grads[0] = a_t  # ys[0] = y0 whatever t[0] is: no direct term
        fwd["stats"]["nfe_backward"] = nfe
        return (None, a, t_grads, *a_p)


def solve_backsolve(func: Callable, y0: State, t: Any, *, method: str, rtol: float,
                    atol: float, per_sample: bool, dense: bool, max_steps: int,
                    controller: Optional[PIDController], step_size: Optional[float],
                    first_step: Optional[float], poll_every: Optional[int],
                    error_norm: Optional[Callable[[Tensor], Tensor]],
                    adjoint_params: Optional[Sequence[Tensor]],
                    adjoint_options: Optional[Dict[str, Any]]) -> ODESolution:
    """`solve_ode` with ``gradient='backsolve'``; ``stats['nfe_backward']`` is filled in
    by the backward pass."""
    if per_sample:
        raise InvalidInputError(
            "gradient='backsolve' does not support `per_sample=True` (rows with their own "
            "step sizes cannot share one parameter adjoint); use gradient='checkpoint' or "
            "'direct' with per_sample, or per_sample=False")
    if dense:
        raise InvalidInputError("gradient='backsolve' does not support `dense=True`; use "
                                "output times `t` or gradient='direct'/'checkpoint'")
    opts = _check_adjoint_options(adjoint_options)
    params = _collect_params(func, adjoint_params)
    if not isinstance(y0, (tuple, list, torch.Tensor)):
        raise InvalidInputError(
            f"`y0` must be a floating-point tensor or a tuple of them; got {describe(y0)}")
    flat = _Flat(y0, per_sample=False)
    y = flat.flatten(y0) if flat.is_tuple else y0

    def f(tt: Tensor, yy: Tensor) -> Tensor:
        if not flat.is_tuple:
            return func(tt, yy)
        out = func(tt, flat.unflatten(yy))
        if not (isinstance(out, (tuple, list)) and len(out) == len(flat.shapes) and all(
                isinstance(o, torch.Tensor) and o.shape == s for o, s in zip(out, flat.shapes))):
            got = ([tuple(getattr(o, "shape", ())) for o in out]
                   if isinstance(out, (tuple, list)) else describe(out))
            raise FunctionOutputError(
                f"`func` must return the same structure as y ({len(flat.shapes)} tensors of "
                f"shapes {[tuple(s) for s in flat.shapes]}); got {got}")
        return flat.flatten(out)

    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=y.dtype if isinstance(y, torch.Tensor) else None)
    stats: Dict[str, Any] = {}
    fwd = {"f": f, "stats": stats, "adjoint": opts,
           "y_sizes": flat.sizes if flat.is_tuple else [int(y.numel())],
           "solve": dict(method=method, rtol=rtol, atol=atol, max_steps=max_steps,
                         controller=controller, step_size=step_size, first_step=first_step,
                         poll_every=poll_every, error_norm=error_norm)}
    ys = _Backsolve.apply(fwd, y, t, *params)
    out = flat.unflatten(ys, (ys.shape[0],)) if flat.is_tuple else ys
    return ODESolution(out, t, stats)


def odeint_adjoint(func: Callable, y0: State, t: Any, *, rtol: float = 1e-7, atol: float = 1e-9,
                   method: Optional[str] = None, options: Optional[Dict[str, Any]] = None,
                   adjoint_rtol: Optional[float] = None, adjoint_atol: Optional[float] = None,
                   adjoint_method: Optional[str] = None,
                   adjoint_options: Optional[Dict[str, Any]] = None,
                   adjoint_params: Optional[Sequence[Tensor]] = None) -> State:
    """torchdiffeq-compatible `odeint` whose backward pass is the continuous adjoint.

    Gradients flow to ``y0`` (tensor or tuple), to ``t``, and to ``adjoint_params``
    (default: the parameters of ``func`` when it is an ``nn.Module``; a plain function has
    none, and tensors it closes over receive no gradient unless listed here).
    ``adjoint_options`` takes ``norm`` ('default', 'seminorm' or a callable),
    ``step_size``, ``max_steps`` and ``first_step`` for the backward solve;
    ``adjoint_rtol``/``adjoint_atol``/``adjoint_method`` default to the forward ones.
    """
    opts = parse_options(options)
    if opts.get("per_sample"):
        raise InvalidInputError("odeint_adjoint does not support options['per_sample']; use "
                                "solve_ode(..., per_sample=True, gradient='checkpoint')")
    if opts.pop("gradient", "backsolve") != "backsolve":
        raise InvalidInputError("odeint_adjoint always uses gradient='backsolve'; drop "
                                "options['gradient'] or call odeint")
    adj = _check_adjoint_options(adjoint_options)
    for key, value in (("rtol", adjoint_rtol), ("atol", adjoint_atol),
                       ("method", adjoint_method)):
        if value is not None:
            adj[key] = value
    sol = solve_ode(func, y0, t, method=method or "dopri5", rtol=rtol, atol=atol,
                    gradient="backsolve", adjoint_params=adjoint_params, adjoint_options=adj,
                    **opts)
    return sol.ys
