"""The samplers' finiteness poll: one host sync every ``poll_every`` steps (default 1 on CPU, 16
on accelerators) and one at the end, as the solvers poll (../shared/DESIGN.md)."""
from __future__ import annotations

from typing import Optional

import torch

from solvers.errors import NonFiniteError

Tensor = torch.Tensor

__all__ = ["FinitePoll"]


class FinitePoll:
    """The samplers' finiteness check: after step ``i`` (state at ``ts[i + 1]``) one host sync
    every ``poll_every`` steps and after the last step, and `final` after the last operation
    (e.g. denoising). On a non-finite state it raises `NonFiniteError` whose ``t`` is the time
    of the poll that found it (the state was finite at the previous poll, ``stats['t_finite']``),
    ``ys`` the last state seen finite and ``stats`` ``{'nfe', 'n_steps', 't_finite'}``."""

    def __init__(self, sampler: str, ts: Tensor, x: Tensor,
                 poll_every: Optional[int] = None) -> None:
        self.every = (1 if x.device.type == "cpu" else 16) if poll_every is None else poll_every
        self.sampler, self.ts, self.n = sampler, ts, len(ts) - 1
        self.last, self.last_i = x, -1

    def __call__(self, i: int, x: Tensor, nfe: int) -> None:
        """Poll after step ``i`` (0-based) when it is due; ``nfe`` score calls so far."""
        if (i + 1) % self.every == 0 or i == self.n - 1:
            self._check(x, i, self.ts[i + 1], nfe)

    def now(self, x: Tensor, t: Tensor, nfe: int) -> None:
        """Poll at once at time ``t`` between the grid's ends (adaptive samplers, whose steps
        are not the grid's; one host sync)."""
        self._check(x, 0, t, nfe)

    def final(self, x: Tensor, t: Tensor, nfe: int) -> Tensor:
        """Check the returned state (one host sync); returns it."""
        self._check(x, self.n, t, nfe, final=True)
        return x

    def wrap(self, err: NonFiniteError) -> NonFiniteError:
        """The solver's `NonFiniteError` (em and ode poll inside `solvers`) restated for this
        sampler; ``t``, ``ys`` and ``stats`` are the solver's."""
        t = torch.as_tensor(err.t).detach().double()
        when = (f"{float(t):.6g}" if t.numel() == 1 else
                f"{float(t.min()):.6g} ... {float(t.max()):.6g} (per row)")
        return NonFiniteError(
            f"the `{self.sampler}` sampler's state became non-finite by t = {when} (polled "
            f"every {self.every} step(s) by solvers: {err}). Check score_fn for NaN/inf outputs "
            f"(or use more steps)", t=err.t, ys=err.ys, stats=err.stats)

    def _check(self, x: Tensor, i: int, t: Tensor, nfe: int, final: bool = False) -> None:
        if bool(torch.isfinite(x).all()):
            self.last, self.last_i = x, i
            return
        t_ok = float(self.ts[self.last_i + 1]) if self.last_i < self.n else float(self.ts[-1])
        where = ("in the final denoising step" if final else
                 f"by t = {float(t):.6g} (step {i + 1} of {self.n}, polled every {self.every} "
                 f"step(s))")
        raise NonFiniteError(
            f"the `{self.sampler}` sampler's state became non-finite {where}; it was finite at "
            f"t = {t_ok:.6g}. Check score_fn for NaN/inf outputs (or use more steps)",
            t=t.detach(), ys=self.last,
            stats={"nfe": nfe, "n_steps": min(i + 1, self.n), "t_finite": t_ok})
