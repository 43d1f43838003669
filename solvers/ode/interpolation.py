"""Dense output: evaluating a step's continuous extension, and `DenseInterpolant`, the
piecewise-polynomial solution kept by ``solve_ode(..., dense=True)``.

A step's extension is ``y(t + θh) = y + h Σ_m b_m(θ) Q_m`` with ``Q_m = Σ_i G[i, m] k_i``,
where ``b_m`` is Hairer's nested basis θ, θ(1-θ), θ²(1-θ), ... and G the tableau's dense
matrix converted to it (`rk.nested_coefficients`): the nested form
``θ(Q_0 + (1-θ)(Q_1 + θ(Q_2 + ...)))`` does not cancel as the monomial form does.
Steps whose extension needs extra stages that were not evaluated are only ever
interpolated at θ = 1, where those stages have zero weight.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch

from ..errors import InvalidInputError
from .rk import CompiledTableau

Tensor = torch.Tensor

__all__ = ["interpolate_stages", "stage_interpolant", "nested_horner", "DenseInterpolant"]


def nested_horner(Q: Sequence[Tensor], theta: Tensor) -> Tensor:
    """``θ(Q_0 + (1-θ)(Q_1 + θ(Q_2 + (1-θ)(Q_3 + ...))))`` (``theta`` broadcasts against
    every ``Q_m``)."""
    one_minus = 1 - theta
    acc = Q[-1]
    for m in range(len(Q) - 2, -1, -1):
        acc = torch.addcmul(Q[m], acc, one_minus if m % 2 == 0 else theta)
    return acc * theta


def interpolate_stages(ct: CompiledTableau, y0: Tensor, h: Tensor, ks: Sequence[Tensor],
                       theta: Tensor, per_sample: bool) -> Tensor:
    """Evaluate one step's continuous extension at fractions ``theta`` of the step.

    Joint mode: ``theta`` has shape ``(W,)``, ``h`` is 0-dim; returns ``(W, *y0.shape)``.
    Per sample: ``theta`` is ``(B, W)``, ``h`` is ``(B,)``; returns ``(W, *y0.shape)``.
    The step's polynomial is evaluated in the nested form (`nested_horner`).
    """
    return stage_interpolant(ct, y0, h, ks, per_sample)(theta)


def stage_interpolant(ct: CompiledTableau, y0: Tensor, h: Tensor, ks: Sequence[Tensor],
                      per_sample: bool) -> Callable[[Tensor], Tensor]:
    """``theta -> `` the step's continuous extension there (as `interpolate_stages`), with
    the polynomial's coefficients formed once."""
    Q = _coefficients(ct, ks).unbind(0)                          # degree x state
    ones = [1] * (y0.dim() - 1)
    hb = h.reshape(h.shape[0], *ones) if per_sample else h

    def at(theta: Tensor) -> Tensor:
        if per_sample:
            th = theta.T.reshape(theta.shape[1], theta.shape[0], *ones)  # (W, B, 1, ...)
        else:
            th = theta.reshape(theta.shape[0], *([1] * y0.dim()))         # (W, 1, ...)
        return torch.addcmul(y0, hb, nested_horner(Q, th))
    return at


def _coefficients(ct: CompiledTableau, ks: Sequence[Tensor]) -> Tensor:
    """Q_m = Σ_i G[i, m] k_i, shape (degree, *state). Stages not evaluated (extra stages a
    step skipped) are left out: they have zero weight at θ = 1, the only place such a step
    is evaluated."""
    P = ct.dense[:len(ks)]
    return torch.tensordot(P.T, torch.stack(list(ks[:P.shape[0]])), dims=1)


def _stack_records(ct: CompiledTableau, records: List[tuple]) -> Tuple[Tensor, ...]:
    """Per-step start times, step sizes, start states and extension coefficients."""
    return (torch.stack([r[0] for r in records]), torch.stack([r[1] for r in records]),
            torch.stack([r[2] for r in records]),
            torch.stack([_coefficients(ct, r[3]) for r in records]))


class DenseInterpolant:
    """Piecewise-polynomial solution over the accepted steps of a solve.

    ``evaluate(t)`` returns shape ``(len(t), *y0.shape)``. In per-sample mode each row has
    its own steps (``t0s``/``hs`` of shape ``(n, B)`` with an ``accepted`` mask).
    """

    def __init__(self, t0s: Tensor, hs: Tensor, y0s: Tensor, coefs: Tensor, direction: float,
                 accepted: Optional[Tensor] = None) -> None:
        self.t0s, self.hs, self.y0s, self.coefs = t0s, hs, y0s, coefs
        self.direction = direction
        self.accepted = accepted
        self.unflatten: Callable[[Tensor], Union[Tensor, Tuple[Tensor, ...]]] = lambda v: v
        start = t0s.min() if direction > 0 else t0s.max()
        ends = t0s + hs
        if accepted is not None:
            ends = torch.where(accepted, ends, t0s)
        end = ends.max() if direction > 0 else ends.min()
        self.span = (float(start), float(end))

    @classmethod
    def from_fixed(cls, ct: CompiledTableau, records: List[tuple],
                   direction: float) -> "DenseInterpolant":
        """From fixed-grid records ``(t0, h, y0, ks)``: every step is accepted (per-row
        step times ``(B,)`` make a per-sample interpolant)."""
        t0s, hs, y0s, coefs = _stack_records(ct, records)
        if t0s.dim() == 2:
            return cls(t0s, hs, y0s, coefs, direction, torch.ones_like(t0s, dtype=torch.bool))
        return cls(t0s, hs, y0s, coefs, direction)

    @classmethod
    def from_adaptive(cls, ct: CompiledTableau, records: List[tuple], direction: float,
                      per_sample: bool) -> "DenseInterpolant":
        """From adaptive records ``(t0, h, y0, ks, accepted)``."""
        t0s, hs, y0s, coefs = _stack_records(ct, records)
        acc = torch.stack([r[4] for r in records])
        if per_sample:
            return cls(t0s, hs, y0s, coefs, direction, accepted=acc)
        keep = acc.nonzero().squeeze(-1)
        return cls(t0s[keep], hs[keep], y0s[keep], coefs[keep], direction)

    def evaluate(self, t: Union[Tensor, float, Sequence[float]]) -> Union[Tensor, tuple]:
        try:
            t = torch.as_tensor(t, dtype=self.t0s.dtype, device=self.t0s.device).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidInputError(
                f"`t` for evaluate must be a time or a 1-D sequence of times; got {t!r}") from None
        lo, hi = min(self.span), max(self.span)
        tc = t.detach()
        if bool(((tc < lo - 1e-12 * max(1.0, abs(lo))) | (tc > hi + 1e-12 * max(1.0, abs(hi)))
                 | tc.isnan()).any()):
            raise InvalidInputError(
                f"`t` for evaluate must lie in the solved interval [{lo:.6g}, {hi:.6g}]; got "
                f"values in [{float(tc.min()):.6g}, {float(tc.max()):.6g}]")
        d = self.direction
        if self.accepted is None:
            r = torch.searchsorted((d * self.t0s).contiguous(), (d * t).contiguous(), right=True)
            r = (r - 1).clamp(0, self.t0s.shape[0] - 1)
            theta = (t - self.t0s[r]) / self.hs[r]                       # (Q,)
            c = self.coefs[r]                                            # (Q, deg, *state)
            inc = nested_horner(c.unbind(1), theta.reshape(-1, *([1] * (c.dim() - 2))))
            h = self.hs[r].reshape(-1, *([1] * (inc.dim() - 1)))
            return self.unflatten(self.y0s[r] + h * inc)
        # per sample: the last accepted step of each row starting at or before t
        n, B = self.t0s.shape
        ok = self.accepted.unsqueeze(-1) & (d * self.t0s.unsqueeze(-1) <= d * t)  # (n, B, Q)
        steps = torch.arange(n, device=t.device).reshape(n, 1, 1)
        first = self.accepted.float().argmax(0)                                    # (B,)
        r = torch.where(ok.any(0), (ok * steps).amax(0), first.unsqueeze(-1))      # (B, Q)
        rows = torch.arange(B, device=t.device).unsqueeze(-1)
        theta = (t - self.t0s[r, rows]) / self.hs[r, rows]                         # (B, Q)
        c = self.coefs.reshape(n, self.coefs.shape[1], B, -1)[r, :, rows]          # (B,Q,deg,M)
        inc = nested_horner(c.unbind(2), theta.unsqueeze(-1))                      # (B, Q, M)
        y0 = self.y0s.reshape(n, B, -1)[r, rows]                                   # (B, Q, M)
        out = y0 + self.hs[r, rows].unsqueeze(-1) * inc
        return self.unflatten(out.transpose(0, 1).reshape(t.shape[0], *self.y0s.shape[1:]))
