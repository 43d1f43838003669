"""Dense Jacobians of the vector field, one ``(n, n)`` matrix per row, and their LU
factorisations.

Rows: per sample, the flat state ``(B, *event)`` is ``B`` rows of ``n`` values whose
Jacobians are independent (the per-sample assumption: row b of f depends on row b of y
only); in joint mode the whole state is one row (``R = 1``, ``n`` = its size).

Where the Jacobian comes from, in order: the user's ``jac(t, y)`` (``(B, n, n)`` per
sample, ``(N, N)`` joint, on the flat state); otherwise reverse-mode autograd of
``Σ_b f(t, y)_b``, one pass per component (each pass gives that row of every row's
Jacobian at once, even when f indexes per-row parameters by position); and, when f has
no autograd graph to y (it calls ``torch.autograd.grad`` itself, or detaches), forward
differences on the whole batch (n + 1 calls of f). Dense factorisation costs O(n³) per
row: sensible up to n of a few hundred per row (a few thousand in joint mode on an
accelerator); no matrix-free (Krylov) option is offered.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch

from ..errors import FunctionOutputError, describe

Tensor = torch.Tensor

__all__ = ["Jacobian", "LU", "row_view"]


def row_view(v: Tensor, per_sample: bool) -> Tensor:
    """``(R, n)`` view of a flat state (``R = B`` per sample, 1 joint)."""
    return v.reshape(v.shape[0], -1) if per_sample else v.reshape(1, -1)


class LU:
    """LU factors of the iteration matrices ``I - hγ J`` (one per row), ``(R, m, m)``."""

    def __init__(self, M: Tensor) -> None:
        self.lu, self.piv, _ = torch.linalg.lu_factor_ex(M)

    @classmethod
    def of(cls, J: Tensor, hg: Tensor) -> "LU":
        """Factor ``I - hg J`` with ``hg`` a scalar, 0-dim or ``(R,)`` tensor."""
        hg = torch.as_tensor(hg, dtype=J.dtype, device=J.device)
        hb = hg.reshape(-1, 1, 1) if hg.dim() == 1 else hg
        eye = torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
        return cls(eye - hb * J)

    def solve(self, v: Tensor, transpose: bool = False) -> Tensor:
        """``M⁻¹ v`` (``M⁻ᵀ v`` when ``transpose``) for ``v`` of shape ``(R, m)``."""
        out = torch.linalg.lu_solve(self.lu, self.piv, v.unsqueeze(-1), adjoint=transpose)
        return out.squeeze(-1)


class Jacobian:
    """The Jacobians of a solve, cached between steps and refreshed on request.

    ``current(fn, t, y, f0)`` returns the cached Jacobian, recomputing it (for every row:
    one batched evaluation) when a row asked for a refresh (`mark`: slow or failed Newton
    convergence) and its state has moved since. Counters: ``n_jac`` batched evaluations."""

    def __init__(self, jac: Optional[Callable], per_sample: bool) -> None:
        self.user, self.per_sample = jac, per_sample
        self.auto_ok = True
        self.J: Optional[Tensor] = None
        self.y_at: Optional[Tensor] = None
        self.stale: Optional[Tensor] = None
        self.n_jac = 0

    def evaluate(self, fn: Callable, t: Tensor, y: Tensor, f0: Optional[Tensor] = None
                 ) -> Tensor:
        """The Jacobians at ``(t, y)``, ``(R, n, n)`` (differentiable when grad is on)."""
        self.n_jac += 1
        if self.user is not None:
            return self._user(t, y)
        if self.auto_ok:
            try:
                return self._auto(fn, t, y)
            except RuntimeError:
                self.auto_ok = False  # f cannot be transformed: differences from now on
        return self._differences(fn, t, y, fn(t, y) if f0 is None else f0)

    def current(self, fn: Callable, t: Tensor, y: Tensor, f0: Optional[Tensor] = None,
                at_y: bool = False) -> Tensor:
        """The cached Jacobian (detached), refreshed where asked (``at_y``: wherever the row
        has moved since it was evaluated, as a Rosenbrock method needs)."""
        yr = row_view(y, self.per_sample).detach()
        if self.J is None or self.J.shape[0] != yr.shape[0]:
            need = True
        else:
            moved = (yr != self.y_at).any(-1)
            ask = moved if at_y else self.stale & moved
            need = bool(ask.any())
        if need:
            with torch.no_grad():
                self.J = self.evaluate(fn, t, y, f0).detach()
            self.y_at = yr.clone()
            self.stale = torch.zeros(yr.shape[0], dtype=torch.bool, device=y.device)
        return self.J

    def fresh(self, y: Tensor) -> Tensor:
        """Per row: whether the cached Jacobian was evaluated at ``y``."""
        yr = row_view(y, self.per_sample).detach()
        if self.J is None or self.y_at.shape != yr.shape:
            return torch.zeros(yr.shape[0], dtype=torch.bool, device=y.device)
        return (yr == self.y_at).all(-1)

    def mark(self, rows: Tensor) -> None:
        """Ask for a fresh Jacobian for ``rows`` (a ``(R,)`` mask) at their next step."""
        if self.stale is not None and rows.shape == self.stale.shape:
            self.stale = self.stale | rows

    def _auto(self, fn: Callable, t: Tensor, y: Tensor) -> Tensor:
        """Reverse-mode rows of the Jacobian: pass i differentiates ``Σ_b f(t, y)_{b,i}``,
        which per sample gives every row's row i at once (plain autograd: torch.func's
        first call would import torch._dynamo, seconds). Raises RuntimeError when f's
        output has no graph to y."""
        create = torch.is_grad_enabled() and (y.requires_grad or t.requires_grad)
        with torch.enable_grad():
            v = y if create else y.detach().requires_grad_(True)
            out = row_view(fn(t, v), self.per_sample)
            R, n = out.shape
            if not out.requires_grad:
                raise RuntimeError("f(t, y) has no autograd graph to y")
            if n > 32:
                eye = torch.eye(n, dtype=out.dtype, device=out.device)
                (g,) = torch.autograd.grad(out.sum(0), v, eye, is_grads_batched=True,
                                           create_graph=create, allow_unused=True)
                rows = [row_view(gi, self.per_sample) for gi in g] if g is not None else None
            else:
                rows = [torch.autograd.grad(out[:, i].sum(), v, retain_graph=True,
                                            create_graph=create, allow_unused=True)[0]
                        for i in range(n)]
                rows = None if any(r is None for r in rows) else \
                    [row_view(r, self.per_sample) for r in rows]
        if rows is None:
            raise RuntimeError("f(t, y) does not depend on y through autograd")
        return torch.stack(rows, dim=1)                     # (R, n, n): J[r, i, j]

    def _differences(self, fn: Callable, t: Tensor, y: Tensor, f0: Tensor) -> Tensor:
        """Forward differences, one column per call (every row's column j at once)."""
        yr = row_view(y, self.per_sample)
        f0r = row_view(f0, self.per_sample)
        eps = torch.finfo(y.dtype).eps ** 0.5
        delta = eps * yr.detach().abs().clamp_min(1.0)
        cols = []
        for j in range(yr.shape[1]):
            step = torch.zeros_like(yr)
            step[:, j] = delta[:, j]
            fj = row_view(fn(t, (yr + step).reshape(y.shape)), self.per_sample)
            cols.append((fj - f0r) / delta[:, j:j + 1])
        return torch.stack(cols, dim=-1)

    def _user(self, t: Tensor, y: Tensor) -> Tensor:
        R, n = row_view(y, self.per_sample).shape
        out = self.user(t, y)
        want: Tuple[int, ...] = (R, n, n) if self.per_sample else (n, n)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
            raise FunctionOutputError(
                f"`jac` must return the Jacobian of f on the flat state, shape {want}; got "
                f"{describe(out)}")
        return out.to(y.dtype).reshape(R, n, n)


def stats_like(count: Any, row_shape: Tuple[int, ...], device: torch.device) -> Tensor:
    """An integer count as a tensor of the solve's row shape (the `Stats` convention)."""
    return torch.full(row_shape, int(count), dtype=torch.long, device=device)
