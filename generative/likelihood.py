"""Exact likelihood of a score model through its probability-flow ODE (Song et al. 2021, App. D).

Along the flow ``dx/dt = v(t, x) = f x - g^2 score / 2`` the log-density obeys the
instantaneous change of variables ``d log p_t(x(t)) / dt = -div v(t, x(t))``, so

    log p_eps(x) = log p_T(x(T)) + int_eps^T div v(t, x(t)) dt.

`log_likelihood` integrates the augmented state ``(x, Δlogp)`` from eps to T in ONE
`solvers.solve_ode` call, with `solvers.divergence` (exact, or Hutchinson / Hutch++ with probe
vectors drawn once and fixed for the whole solve), and returns nats per sample. `bits_per_dim`
converts to bits per dimension with the data module's dequantisation convention
``bpd = -log2 p(x) / D - log2(bin_width)`` (`generative.data`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

from dynamics import LinearSDE
from dynamics.checks import check_generator
from solvers import DIVERGENCE_METHODS, divergence, sample_probes, solve_ode
from solvers.errors import InvalidInputError, NonFiniteError, describe

Tensor = torch.Tensor

__all__ = ["log_likelihood", "bits_per_dim"]


def log_likelihood(sde: LinearSDE, score_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, *,
                   method: str = "dopri5", divergence_method: str = "exact",
                   n_probes: int = 1, probe: str = "rademacher", rtol: float = 1e-5,
                   atol: float = 1e-5, eps: Optional[float] = None,
                   prior_logp: Optional[Callable[[Tensor], Tensor]] = None,
                   generator: Optional[torch.Generator] = None, return_stats: bool = False,
                   **solver_options: Any) -> Union[Tensor, Tuple[Tensor, Dict[str, Any]]]:
    """Per-sample ``log p_eps(x)`` in nats, shape ``(B,)``, via the probability-flow ODE.

    Args:
        sde, score_fn: a `dynamics` SDE and ``score_fn(x, t)``.
        x: data ``(B, *event)`` (dequantised, for discrete data).
        method, rtol, atol, **solver_options: passed to `solvers.solve_ode` (any method;
            ``step_size=...`` for fixed steps, ``per_sample=True`` for per-row steps).
        divergence_method: ``'exact'``, ``'hutchinson'`` or ``'hutch++'`` (`solvers.divergence`).
        n_probes, probe, generator: probes of the stochastic estimators, drawn once per solve.
        eps: start time (default ``sde.eps``); the flow runs from eps to ``sde.T``.
        prior_logp: log-density of x(T) (default ``sde.prior_logp``).
        return_stats: also return the solver statistics (``nfe``, ...).

    A non-finite ``x`` (checked before solving) or result raises `NonFiniteError`.
    """
    if not isinstance(sde, LinearSDE):
        raise InvalidInputError(f"`sde` must be a dynamics SDE (LinearSDE); got {describe(sde)}")
    if not callable(score_fn):
        raise InvalidInputError(f"`score_fn` must be callable score_fn(x, t); "
                                f"got {describe(score_fn)}")
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2 \
            or x.device.type == "meta" or x.numel() == 0:
        raise InvalidInputError(f"`x` must be a floating-point tensor (B, *event) with values "
                                f"and positive sizes; got {describe(x)}"
                                + (" on the meta device" if isinstance(x, Tensor)
                                   and x.device.type == "meta" else ""))
    check_generator(generator, x.device)
    if divergence_method not in DIVERGENCE_METHODS:
        raise InvalidInputError(f"`divergence_method` must be one of {DIVERGENCE_METHODS}; "
                                f"got {divergence_method!r}")
    t0 = sde.eps if eps is None else float(eps)
    if not (0.0 <= t0 < sde.T):
        raise InvalidInputError(f"`eps` must satisfy 0 <= eps < T = {sde.T:g}; got {eps!r}")
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteError(f"`x` is non-finite ({int((~torch.isfinite(x)).sum())} NaN/inf of "
                             f"{x.numel()} entries); log p_eps(x) needs finite data",
                             t=torch.tensor(t0), ys=x, stats={"nfe": 0})
    flow = sde.probability_flow(score_fn)
    probes = None
    if divergence_method != "exact":
        probes = sample_probes(x, n_probes, probe, generator=generator)

    B, shape = x.shape[0], x.shape

    def augmented(t: Tensor, state: Tensor) -> Tensor:
        y = state[:, :-1].reshape(shape)
        with torch.enable_grad():
            v, div = divergence(lambda z: flow(t, z), y.detach(), method=divergence_method,
                                eps=probes)
        return torch.cat([v.detach().reshape(B, -1), div.detach()[:, None]], dim=1)

    # [x, Δlogp] as one (B, D + 1) state: one solve, and per-sample mode works unchanged
    # (a tuple state in per-sample mode hits a reshape bug in solvers' _Flat.unflatten).
    ts = torch.tensor([t0, sde.T], dtype=x.dtype, device=x.device)
    state0 = torch.cat([x.reshape(B, -1), x.new_zeros(B, 1)], dim=1)
    sol = solve_ode(augmented, state0, ts, method=method, rtol=rtol, atol=atol, **solver_options)
    x_T, delta = sol.ys[-1][:, :-1].reshape(shape), sol.ys[-1][:, -1]
    lp_T = sde.prior_logp(x_T) if prior_logp is None else prior_logp(x_T)
    if not isinstance(lp_T, Tensor) or lp_T.shape != (B,):
        raise InvalidInputError(f"`prior_logp(z)` must return a ({B},) tensor; "
                                f"got {describe(lp_T)}")
    logp = lp_T + delta
    if not bool(torch.isfinite(logp).all()):
        raise NonFiniteError(f"log p_eps(x) is non-finite for {int((~torch.isfinite(logp)).sum())}"
                             f" of {B} rows: the prior log-density of x(T) "
                             f"({'prior_logp' if prior_logp is not None else 'sde.prior_logp'}) "
                             f"or the divergence integral returned NaN/inf",
                             t=torch.tensor(sde.T), ys=sol.ys, stats=sol.stats)
    return (logp, sol.stats) if return_stats else logp


def bits_per_dim(sde: LinearSDE, score_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, *,
                 bin_width: Optional[float] = None, **kwargs: Any) -> Tensor:
    """Per-sample bits/dim ``-log p(x) / (D ln 2) - log2(bin_width)``, shape ``(B,)``.

    ``bin_width`` is the width of one quantisation bin of (uniformly dequantised) discrete data
    in data space (`generative.data.Dataset.bin_width`, e.g. 2/16 for digits in [-1, 1]); None
    for continuous data (no correction). Other arguments as `log_likelihood`.
    """
    if bin_width is not None:
        if isinstance(bin_width, bool) or not isinstance(bin_width, (int, float)) \
                or not math.isfinite(bin_width) or bin_width <= 0:
            raise InvalidInputError(f"`bin_width` must be a positive number or None; "
                                    f"got {bin_width!r}")
    logp = log_likelihood(sde, score_fn, x, **kwargs)
    D = x[0].numel()
    bpd = -logp / (D * math.log(2.0))
    if bin_width is not None:
        bpd = bpd - math.log2(bin_width)
    return bpd
