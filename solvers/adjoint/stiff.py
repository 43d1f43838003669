"""The joint continuous adjoint solved with an implicit method (stiff problems).

The backward solve integrates ``[a, a_t, a_θ]`` only, reading y from the forward solve's
dense output: integrating y backwards, as the non-stiff backsolve does, would amplify its
errors by ``exp(|λ| t)`` for every stiff eigenvalue λ. Memory is the forward's dense
output (O(steps); implicit methods take few). The adjoint is as stiff as the forward
problem and is solved with the same implicit method, whose Newton matrix uses ``-Jᵀ`` on
the ``a`` block (a Rosenbrock method: the whole augmented Jacobian, by forward
differences) — dense over the augmented state: for small parameter counts; with many
parameters prefer gradient 'direct' or 'checkpoint', whose implicit-function gradients
cost one transposed solve per stage).
"""
from __future__ import annotations

from typing import Any, List

import torch

from ..engine.controller import ErrorNorm
from ..engine.integrate import integrate_ode
from ..implicit.jacobian import Jacobian
from ..implicit.methods import ImplicitMethod, resolve_method
from ..implicit.tableaus import RosenbrockTableau
from .vjp import field_vjps, interval_kwargs

Tensor = torch.Tensor

__all__ = ["backward_given_y"]


class _AdjointGivenY:
    """The joint adjoint field on ``[a, a_t, a_θ]`` with y from the forward's dense output,
    and its Jacobian for Newton: ``-Jᵀ`` on the ``a`` block (the other channels are
    quadratures of a; leaving their coupling out only costs simplified Newton one more
    iteration)."""

    def __init__(self, rec: Any, shape: torch.Size, params: List[Tensor],
                 need_t: bool) -> None:
        self.rec, self.shape, self.params, self.need_t = rec, shape, params, need_t
        self.n = int(torch.Size(shape).numel())
        self.sizes = [self.n, 1] + [p.numel() for p in params]
        self.jac_y = Jacobian(None, per_sample=False)

    def y(self, t: Tensor) -> Tensor:
        """y(t) from the forward solve; stage times past the ends (ESDIRK stages with
        c > 1) read the end value."""
        lo, hi = sorted(self.rec.dense.span)
        return self.rec.dense.evaluate(t.reshape(1).clamp(lo, hi))[0].reshape(self.shape)

    def __call__(self, t: Tensor, z: Tensor) -> Tensor:
        _, gy, gt, gp = field_vjps(self.rec.f, t, self.y(t), z[:self.n].reshape(self.shape),
                                   self.need_t, self.params)
        parts = [gy.reshape(-1), gt.reshape(1)] + [g.reshape(-1) for g in gp]
        return torch.cat([p.to(z.dtype) for p in parts])

    def jac(self, t: Tensor, z: Tensor) -> Tensor:
        J = self.jac_y.evaluate(self.rec.f, t, self.y(t))[0]
        out = torch.zeros(z.shape[0], z.shape[0], dtype=z.dtype, device=z.device)
        out[:self.n, :self.n] = -J.T
        return out


def backward_given_y(rec: Any, t: Tensor, ys: Tensor, params: List[Tensor],
                     grad_ys: Tensor, need_t: bool) -> tuple:
    """Joint backsolve with an implicit method: ``[a, a_t, a_θ]`` backwards between the
    output times, y interpolated from the forward solve."""
    shape = ys.shape[1:]
    aug = _AdjointGivenY(rec, shape, params, need_t)
    n = aug.n
    norm = rec.mode.norm if callable(rec.mode.norm) else (
        (lambda z: ErrorNorm(False, rec.y_sizes)(z[:n])) if rec.mode.norm == "seminorm"
        else ErrorNorm(False, rec.y_sizes + aug.sizes[1:]))
    solve_kw = rec.mode.backward_kwargs(rec.forward, norm)
    spec = resolve_method(solve_kw["method"], "adjoint_method")
    # Newton tolerates the block Jacobian; a Rosenbrock method's order needs the exact one
    # (forward differences over the augmented state: f cannot be transformed there)
    jac = None if isinstance(spec.tableau, RosenbrockTableau) else aug.jac
    solve_kw["method"] = ImplicitMethod(spec.name, spec.tableau, jac, spec.max_iter,
                                        spec.kappa, spec.autonomous)
    z = torch.zeros(n + 1 + sum(aug.sizes[2:]), dtype=ys.dtype, device=ys.device)
    t_grads = torch.zeros_like(t) if need_t else None
    nfe = 0
    with torch.no_grad():
        for i in range(t.shape[0] - 1, 0, -1):
            z[:n] += grad_ys[i].reshape(-1)
            if need_t:
                t_grads[i] = (rec.f(t[i], ys[i]) * grad_ys[i]).sum()
                z[n] -= t_grads[i]
            sol = integrate_ode(aug, z, t[i - 1:i + 1].flip(0),
                                **interval_kwargs(solve_kw, t, i))
            nfe += int(sol.stats["nfe"])
            z = sol.ys[-1].clone()
    parts = torch.split(z, aug.sizes)
    if need_t:
        t_grads[0] = parts[1].reshape(())
    rec.stats["nfe_backward"] = nfe
    return (None, parts[0].reshape(shape) + grad_ys[0], t_grads,
            *[g.reshape(p.shape) for g, p in zip(parts[2:], params)])
