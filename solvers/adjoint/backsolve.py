"""Continuous adjoint ("backsolve") for ODEs: ``solve_ode(..., gradient='backsolve')``
and `odeint_adjoint`.

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

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from ..engine.callbacks import StepHooks, as_step_hooks
from ..engine.controller import ErrorNorm, StepSizeController
from ..engine.flat import FlatState, State
from ..engine.integrate import integrate_ode
from ..engine.solution import ODESolution
from ..errors import FunctionOutputError, InvalidInputError, describe
from ..implicit.methods import ImplicitMethod, resolve_method
from ..ode.interpolation import DenseInterpolant
from .modes import BacksolveAdjoint
from .vjp import field_vjps, interval_kwargs

Tensor = torch.Tensor

__all__ = ["solve_backsolve", "BacksolveRecord"]


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


class _Augmented:
    """The augmented vector field on the flat state ``[y, a, a_t, a_θ...]``."""

    def __init__(self, f: Callable[[Tensor, Tensor], Tensor], n: int, shape: torch.Size,
                 params: List[Tensor], need_t: bool) -> None:
        self.f, self.n, self.shape, self.params, self.need_t = f, n, shape, params, need_t
        self.sizes = [n, n, 1] + [p.numel() for p in params]

    def __call__(self, t: Tensor, z: Tensor) -> Tensor:
        n = self.n
        fy, gy, gt, gp = field_vjps(self.f, t, z[:n].reshape(self.shape),
                                    z[n:2 * n].reshape(self.shape), self.need_t, self.params)
        parts = [fy.reshape(-1), gy.reshape(-1), gt.reshape(1)] + [g.reshape(-1) for g in gp]
        return torch.cat([p.to(z.dtype) for p in parts])


class _AugmentedPerRow:
    """Per-sample augmented field on ``(B, 2M + 1 + P)`` rows ``[y, a, a_t, a_θ]``.

    Every row integrates its own adjoint with its own steps, so the parameter adjoint is
    kept per row (per-sample vector–Jacobian products via ``torch.func``) and summed over
    rows at the end; only the ``[y, a]`` channels enter each row's error control.
    """

    def __init__(self, module: Optional[nn.Module], f: Callable[[Tensor, Tensor], Tensor],
                 shape: torch.Size, params: List[Tensor], need_t: bool) -> None:
        self.f, self.shape, self.need_t = f, shape, need_t
        self.m = int(torch.Size(shape[1:]).numel())
        self.module = module
        ids = {id(p) for p in params}
        self.names = ([n for n, p in module.named_parameters() if id(p) in ids]
                      if module is not None else [])
        self.params = params
        self.sizes = [self.m, self.m, 1] + [p.numel() for p in params]

    def __call__(self, t: Tensor, z: Tensor) -> Tensor:
        B, m = z.shape[0], self.m
        y, a = z[:, :m].reshape(self.shape), z[:, m:2 * m].reshape(self.shape)
        fy, gy, gt, _ = field_vjps(self.f, t, y, a, self.need_t, ())
        parts = [fy.reshape(B, m), gy.reshape(B, m), gt.reshape(B, 1)]
        if self.params:
            parts.append(self._param_vjps(t, y.detach(), a))
        return torch.cat([p.to(z.dtype) for p in parts], dim=1)

    def _param_vjps(self, t: Tensor, y: Tensor, a: Tensor) -> Tensor:
        from torch.func import functional_call, vjp, vmap
        values = {n: p.detach() for n, p in zip(self.names, self.params)}

        def row(tb: Tensor, yb: Tensor, ab: Tensor) -> Tensor:
            def fb(pv):
                return functional_call(self.module, pv, (tb.reshape(1), yb.unsqueeze(0)))[0]
            _, pull = vjp(fb, values)
            g = pull(-ab)[0]
            return torch.cat([g[n].reshape(-1) for n in self.names])

        with torch.enable_grad():
            return vmap(row)(t, y, a)


@dataclass
class BacksolveRecord:
    """What the forward pass hands to the backward pass: the field on the flat state, the
    module owning the parameters (per-sample VJPs), the flat sizes of the state's parts,
    the forward solve's `integrate_ode` arguments, the mode, and the returned solution's
    ``stats``, to which the backward pass adds ``nfe_backward``."""

    f: Callable[[Tensor, Tensor], Tensor]
    module: Optional[nn.Module]
    y_sizes: List[int]
    forward: Dict[str, Any]
    mode: BacksolveAdjoint
    stats: Dict[str, Any] = field(default_factory=dict)
    dense: Optional[DenseInterpolant] = None  # the forward's dense output (implicit methods)

    @property
    def stiff(self) -> bool:
        """An implicit backward method: y is read from the forward's dense output, never
        integrated backwards (its stiff modes would grow like exp(|λ| t))."""
        method = self.mode.method if self.mode.method is not None else self.forward["method"]
        return isinstance(resolve_method(method, "adjoint_method"), ImplicitMethod)


class _Backsolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rec: BacksolveRecord, y0: Tensor, t: Tensor, *params: Tensor) -> Tensor:
        with torch.no_grad():
            sol = integrate_ode(rec.f, y0, t, **rec.forward, dense=rec.stiff)
        rec.stats.update(sol.stats)
        rec.dense = sol.dense
        ctx.rec = rec
        ys = sol.ys
        ctx.save_for_backward(t, ys, *params)
        return ys

    @staticmethod
    def backward(ctx, grad_ys: Tensor):
        rec = ctx.rec
        t, ys, *params = ctx.saved_tensors
        f = rec.f
        need_t = ctx.needs_input_grad[2]
        if rec.forward["per_sample"]:
            return _backward_per_row(rec, t, ys, list(params), grad_ys, need_t)
        if rec.stiff:
            from .stiff import backward_given_y
            return backward_given_y(rec, t, ys, list(params), grad_ys, need_t)
        shape = ys.shape[1:]
        n = int(ys[0].numel())
        aug = _Augmented(f, n, shape, list(params), need_t)
        norm_kind = "default" if rec.mode.norm is None else rec.mode.norm
        if callable(norm_kind):
            norm = norm_kind
        elif norm_kind == "seminorm":
            seg = ErrorNorm(False, rec.y_sizes * 2)
            norm = lambda z: seg(z[:2 * n])  # noqa: E731
        else:
            norm = ErrorNorm(False, rec.y_sizes * 2 + aug.sizes[2:])
        solve_kw = rec.mode.backward_kwargs(rec.forward, norm)
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
                sol = integrate_ode(aug, z, t[i - 1:i + 1].flip(0),
                                    **interval_kwargs(solve_kw, t, i))
                nfe += int(sol.stats["nfe"])
                z = sol.ys[-1]
                parts = torch.split(z, aug.sizes)
                a = parts[1].reshape(shape)
                a_t = parts[2].reshape(())
                a_p = [g.reshape(p.shape) for g, p in zip(parts[3:], params)]
            a = a + grad_ys[0]
            if need_t:
                t_grads[0] = a_t  # ys[0] = y0 whatever t[0] is: no direct term
        rec.stats["nfe_backward"] = nfe
        return (None, a, t_grads, *a_p)


def _backward_per_row(rec: BacksolveRecord, t: Tensor, ys: Tensor, params: List[Tensor],
                      grad_ys: Tensor, need_t: bool) -> tuple:
    """Per-sample backsolve: rows ``[y, a, a_t, a_θ]`` with per-row step control."""
    f = rec.f
    B, shape = ys.shape[1], ys.shape[1:]
    aug = _AugmentedPerRow(rec.module, f, shape, params, need_t)
    m = aug.m
    row_norm = ErrorNorm(True)
    norm = rec.mode.norm
    if not callable(norm):  # the shared parameter channels never enter per-row control
        norm = lambda z: row_norm(z[:, :2 * m])  # noqa: E731
    solve_kw = rec.mode.backward_kwargs(rec.forward, norm)
    a = torch.zeros(B, m, dtype=ys.dtype, device=ys.device)
    a_t = torch.zeros(B, 1, dtype=ys.dtype, device=ys.device)
    a_p = torch.zeros(B, sum(aug.sizes[3:]), dtype=ys.dtype, device=ys.device)
    t_grads = torch.zeros_like(t) if need_t else None
    nfe = torch.zeros(B, dtype=torch.long, device=ys.device)
    with torch.no_grad():
        for i in range(t.shape[0] - 1, 0, -1):
            a = a + grad_ys[i].reshape(B, m)
            if need_t:
                dl_dt = (f(t[i].expand(B), ys[i]) * grad_ys[i]).reshape(B, -1).sum(1)
                t_grads[i] = dl_dt if t.dim() == 2 else dl_dt.sum()  # per-row times: (B,)
                a_t = a_t - dl_dt.unsqueeze(1)
            z = torch.cat([ys[i].reshape(B, m), a, a_t, a_p], dim=1)
            sol = integrate_ode(aug, z, t[i - 1:i + 1].flip(0), per_sample=True,
                                **interval_kwargs(solve_kw, t, i))
            nfe = nfe + sol.stats["nfe"]
            z = sol.ys[-1]
            a, a_t, a_p = z[:, m:2 * m], z[:, 2 * m:2 * m + 1], z[:, 2 * m + 1:]
        a = a + grad_ys[0].reshape(B, m)
        if need_t:
            t_grads[0] = a_t[:, 0] if t.dim() == 2 else a_t.sum()
    rec.stats["nfe_backward"] = nfe
    grads = torch.split(a_p.sum(0), aug.sizes[3:])
    return (None, a.reshape(shape), t_grads,
            *[g.reshape(p.shape) for g, p in zip(grads, params)])


def _user_hooks(callback: Any, flat: FlatState) -> Optional[StepHooks]:
    """Step hooks of the forward solve, which runs on the flat state: tuple states are
    handed to the user's hooks unflattened."""
    hooks = as_step_hooks(callback)
    if hooks is not None and flat.is_tuple:
        hooks.unflatten = flat.unflatten
    return hooks


def _check_tuple_output(out: Any, flat: FlatState) -> None:
    """f must return tensors of the state's part shapes (message in the user's terms)."""
    if not (isinstance(out, (tuple, list)) and len(out) == len(flat.shapes) and all(
            isinstance(o, torch.Tensor) and o.shape == s for o, s in zip(out, flat.shapes))):
        got = ([tuple(getattr(o, "shape", ())) for o in out]
               if isinstance(out, (tuple, list)) else describe(out))
        raise FunctionOutputError(
            f"`func` must return the same structure as y ({len(flat.shapes)} tensors of "
            f"shapes {[tuple(s) for s in flat.shapes]}); got {got}")


def _check_backsolve_args(func: Callable, y0: State, per_sample: bool, dense: bool,
                          adjoint_params: Optional[Sequence[Tensor]]) -> None:
    """Arguments the backsolve adjoint cannot take."""
    if per_sample:
        if isinstance(y0, (tuple, list)):
            raise InvalidInputError("gradient='backsolve' with `per_sample=True` needs a "
                                    "tensor `y0`; got a tuple (concatenate the parts)")
        if adjoint_params is not None and not isinstance(func, nn.Module):
            raise InvalidInputError(
                "gradient='backsolve' with `per_sample=True` computes per-row parameter "
                "adjoints with torch.func and needs `func` to be an nn.Module owning the "
                f"`adjoint_params`; got {describe(func)}")
    if dense:
        raise InvalidInputError("gradient='backsolve' does not support `dense=True`; use "
                                "output times `t` or gradient='direct'/'checkpoint'")


def solve_backsolve(func: Callable, y0: State, t: Any, *, mode: BacksolveAdjoint,
                    method: str, rtol: float, atol: float, per_sample: bool, dense: bool,
                    max_steps: int, controller: StepSizeController,
                    step_size: Optional[float], first_step: Optional[float],
                    poll_every: Optional[int], error_norm: Optional[Callable[[Tensor], Tensor]],
                    adjoint_params: Optional[Sequence[Tensor]],
                    adjoint_options: Optional[Dict[str, Any]], callback: Any = None
                    ) -> ODESolution:
    """`solve_ode` with a `BacksolveAdjoint` (updated by ``adjoint_options``);
    ``stats['nfe_backward']`` is filled in by the backward pass; ``callback`` hooks the
    forward solve's steps."""
    _check_backsolve_args(func, y0, per_sample, dense, adjoint_params)
    mode = mode.with_options(adjoint_options)
    backward_method = resolve_method(mode.method if mode.method is not None else method,
                                     "adjoint_method")
    if per_sample and isinstance(backward_method, ImplicitMethod):
        raise InvalidInputError(
            f"gradient='backsolve' with implicit method {backward_method.name!r} needs "
            "per_sample=False (its backward solve reads y from the joint forward's dense "
            "output); use gradient='direct' or 'checkpoint' per sample")
    params = _collect_params(func, adjoint_params)
    if not isinstance(y0, (tuple, list, torch.Tensor)):
        raise InvalidInputError(
            f"`y0` must be a floating-point tensor or a tuple of them; got {describe(y0)}")
    flat = FlatState(y0, per_sample=False)
    y = flat.flatten(y0) if flat.is_tuple else y0

    checked = []  # tuple outputs are validated on the first call only, as in solve_ode

    def f(tt: Tensor, yy: Tensor) -> Tensor:
        if not flat.is_tuple:
            return func(tt, yy)
        out = func(tt, flat.unflatten(yy))
        if not checked:
            _check_tuple_output(out, flat)
            checked.append(True)
        return flat.flatten(out)

    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=y.dtype if isinstance(y, torch.Tensor) else None)
    if per_sample and isinstance(func, nn.Module):
        owned = {id(p) for p in func.parameters()}
        if any(id(p) not in owned for p in params):
            raise InvalidInputError("with `per_sample=True`, `adjoint_params` must be "
                                    "parameters of `func`")
    rec = BacksolveRecord(
        f, func if isinstance(func, nn.Module) else None,
        flat.sizes if flat.is_tuple else [int(y.numel())],
        dict(method=method, rtol=rtol, atol=atol, max_steps=max_steps, controller=controller,
             step_size=step_size, first_step=first_step, poll_every=poll_every,
             error_norm=error_norm, per_sample=per_sample,
             callback=_user_hooks(callback, flat)), mode)
    ys = _Backsolve.apply(rec, y, t, *params)
    out = flat.unflatten(ys, (ys.shape[0],)) if flat.is_tuple else ys
    return ODESolution(out, t, rec.stats)
