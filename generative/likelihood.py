"""Likelihood by the instantaneous change of variables, for every continuous-time model.

Along a flow ``dx/dt = v(x, t)`` the log-density obeys ``d log p_t(x(t)) / dt = -div v``, so

    log p_t0(x) = log p_t1(x(t1)) + int_t0^t1 div v(x(t), t) dt.

`integrate_log_density` integrates the augmented state ``(x, Δ, ...)`` in ONE
`solvers.solve_ode` call, with `solvers.divergence` (exact, or Hutchinson / Hutch++ with probe
vectors drawn once and fixed for the whole solve); FFJORD, flow matching and score models
(`log_likelihood`: through the probability-flow ODE, Song et al. 2021, App. D) all use it.
`to_bits_per_dim` converts nats to bits per dimension with the data module's dequantisation
convention ``bpd = -log2 p(x) / D - log2(bin_width)`` (`generative.data`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn

from dynamics import LinearSDE, broadcast_time
from dynamics.checks import check_batch, check_choice, check_generator, check_t_min
from dynamics.deprecation import UNSET, renamed_argument
from dynamics.errors import as_input_error
from dynamics.reverse import check_sde_and_score
from solvers import DIVERGENCE_METHODS, PROBE_TYPES, divergence, solve_ode
from solvers.errors import NonFiniteError, describe

from .errors import InputError
from .randomness import Random, draw_probes
from .results import DensityIntegral, LogProbResult, SampleResult, mean_nfe, with_stats

Tensor = torch.Tensor
VelocityFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["GRADIENT_MODES", "CallCounter", "integrate_log_density", "transport",
           "standard_normal_logp", "to_bits_per_dim", "log_likelihood", "bits_per_dim",
           "check_data"]

GRADIENT_MODES = ("backsolve", "checkpoint", "direct")


def standard_normal_logp(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` per row, shape ``(B,)``."""
    D = z[0].numel()
    return -0.5 * z.reshape(z.shape[0], -1).pow(2).sum(1) - 0.5 * D * math.log(2 * math.pi)


def to_bits_per_dim(logp: Tensor, n_dims: int, bin_width: Optional[float] = None) -> Tensor:
    """Bits per dimension ``-logp / (D ln 2) - log2(bin_width)`` of log-densities ``logp`` in
    nats over ``D = n_dims`` dimensions. ``bin_width`` is the width of one quantisation bin of
    (uniformly dequantised) discrete data in data space (`generative.data.Dataset.bin_width`,
    e.g. 2/16 for digits in [-1, 1]); None for continuous data (no correction)."""
    _check_bin_width(bin_width)
    bpd = -logp / (n_dims * math.log(2.0))
    return bpd - math.log2(bin_width) if bin_width is not None else bpd


def _check_bin_width(bin_width: Optional[float]) -> None:
    if bin_width is not None and (isinstance(bin_width, bool)
                                  or not isinstance(bin_width, (int, float))
                                  or not math.isfinite(bin_width) or bin_width <= 0):
        raise InputError(f"`bin_width` must be a positive number or None; "
                         f"got {bin_width!r}")


def check_data(x: Any, event_shape: Optional[Tuple[int, ...]], name: str = "x") -> None:
    """Raise unless ``x`` is a floating-point ``(B, *event)`` tensor (of ``event_shape``)."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise InputError(f"{name}: expected a floating-point tensor (B, *event), "
                         f"got {describe(x)}")
    if event_shape is not None and tuple(x.shape[1:]) != tuple(event_shape):
        raise InputError(f"{name}: expected event shape {tuple(event_shape)} (the "
                         f"model's), got a tensor of shape {tuple(x.shape)}")


class CallCounter:
    """Counts the calls of an augmented field (forward and backward passes)."""

    def __init__(self) -> None:
        self.calls = 0


class _AugmentedField(nn.Module):
    """``[x, Δ, (E_k), (E_J)]' = [f, div f, (‖f‖²), (‖∇f‖²_F)]`` on a ``(B, D + 1 + r)`` state.

    An `nn.Module` owning the velocity net, so backsolve finds its parameters; built once per
    solve with that solve's fixed probes.
    """

    def __init__(self, net: nn.Module, event_shape: Tuple[int, ...], method: str,
                 probes: Optional[Tensor], kinetic: bool, jacobian: bool, counter: CallCounter,
                 sign: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.event_shape, self.method, self.probes = event_shape, method, probes
        self.kinetic, self.jacobian, self.counter, self.sign = kinetic, jacobian, counter, sign
        self.D = math.prod(event_shape)

    def forward(self, t: Tensor, state: Tensor) -> Tensor:
        self.counter.calls += 1
        B, D = state.shape[0], self.D
        x = state[:, :D].reshape(B, *self.event_shape)
        tb = broadcast_time(t, x)
        fn = lambda z: self.net(z, tb)  # noqa: E731
        f, div, *vjp = divergence(fn, x, method=self.method, probes=self.probes,
                                  create_graph=torch.is_grad_enabled(),
                                  return_vjp=self.jacobian)
        parts = [f.reshape(B, D), div[:, None]]
        if self.kinetic:
            parts.append(f.reshape(B, D).pow(2).sum(1, keepdim=True))
        if self.jacobian:
            # ‖J‖²_F: the sum over J's rows (exact) or the probe mean of ‖εᵀJ‖² (Hutchinson)
            sq = vjp[0].reshape(-1, B, D).pow(2).sum(-1)
            parts.append((sq.sum(0) if self.method == "exact" else sq.mean(0))[:, None])
        return self.sign * torch.cat(parts, 1).to(state.dtype)


def integrate_log_density(velocity: VelocityFn, x: Tensor, t0: float, t1: float, *,
                          divergence_method: str = "exact", n_probes: int = 1,
                          probe: str = "rademacher", generator: Random = None,
                          kinetic: bool = False, jacobian: bool = False,
                          method: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5,
                          gradient: str = "direct",
                          adjoint_options: Optional[Dict[str, Any]] = None,
                          counter: Optional[CallCounter] = None, **solver_options: Any
                          ) -> DensityIntegral:
    """Instantaneous change of variables in ONE solve from ``t0`` to ``t1``.

    ``velocity(x, t)`` (an `nn.Module` when gradients to its parameters are wanted with
    ``gradient='backsolve'``) with ``t`` a ``(B,)`` tensor. Returns a `DensityIntegral`
    (unpacks as ``x(t1), Δ, regs, stats``) with ``Δ = ∫_{t0}^{t1} div v dt`` (so
    ``log p_{t0}(x) = log p_{t1}(x(t1)) + Δ``), ``regs`` holding ``'kinetic'`` /
    ``'jacobian'`` integrals when requested, and the solver stats.
    """
    check_data(x, None)
    check_choice("divergence_method", divergence_method, DIVERGENCE_METHODS)
    check_choice("probe", probe, PROBE_TYPES)
    check_choice("gradient", gradient, GRADIENT_MODES)
    if jacobian and divergence_method == "hutch++":
        raise InputError("divergence_method: the Jacobian-Frobenius regulariser shares "
                         "its probes with the trace and supports 'exact' or "
                         "'hutchinson', got 'hutch++'")
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise InputError(f"n_probes: expected an int >= 1, got {n_probes!r}")
    probes = None
    if divergence_method != "exact":
        probes = draw_probes(x, n_probes, probe, generator)
    counter = counter if counter is not None else CallCounter()
    net = velocity if isinstance(velocity, nn.Module) else _FnModule(velocity)
    field = _AugmentedField(net, tuple(x.shape[1:]), divergence_method, probes, kinetic,
                            jacobian, counter)
    B, D = x.shape[0], x[0].numel()
    n_reg = int(kinetic) + int(jacobian)
    state0 = torch.cat([x.reshape(B, D), x.new_zeros(B, 1 + n_reg)], 1)
    ts = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
    kw: Dict[str, Any] = dict(method=method, rtol=rtol, atol=atol, gradient=gradient,
                              **solver_options)
    if gradient == "backsolve":
        kw["adjoint_options"] = dict({"norm": "seminorm"}, **(adjoint_options or {}))
    sol = solve_ode(field, state0, ts, **kw)
    end = sol.ys[-1]
    x1 = end[:, :D].reshape(x.shape)
    delta = end[:, D]
    regs: Dict[str, Tensor] = {}
    col = D + 1
    if kinetic:
        regs["kinetic"] = end[:, col]
        col += 1
    if jacobian:
        regs["jacobian"] = end[:, col]
    return DensityIntegral(x1, delta, regs, sol.stats)


class _FnModule(nn.Module):
    def __init__(self, fn: VelocityFn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.fn(x, t)


def transport(velocity: VelocityFn, x: Tensor, t0: float, t1: float, *, method: str = "dopri5",
              return_stats: bool = False, **solver_kwargs: Any) -> SampleResult:
    """Integrate ``dx/dt = velocity(x, t)`` from ``t0`` to ``t1`` (either direction): a
    `SampleResult` (``x(t1)``, its mean NFE and the solver ``stats``; ``return_stats=True``,
    deprecated, gives the old ``(x, stats)`` tuple)."""
    def f(t: Tensor, y: Tensor) -> Tensor:
        return velocity(y, broadcast_time(t, y))

    ts = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
    sol = solve_ode(f, x, ts, method=method, **solver_kwargs)
    result = SampleResult(sol.ys[-1], mean_nfe(sol.stats["nfe"]), stats=sol.stats)
    return with_stats(result, return_stats, "transport")


def log_likelihood(sde: LinearSDE, score_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, *,
                   method: str = "dopri5", divergence_method: str = "exact",
                   n_probes: int = 1, probe: str = "rademacher", rtol: float = 1e-5,
                   atol: float = 1e-5, t_min: Optional[float] = None,
                   prior_logp: Optional[Callable[[Tensor], Tensor]] = None,
                   generator: Optional[torch.Generator] = None, return_stats: bool = False,
                   eps: Any = UNSET, **solver_options: Any) -> LogProbResult:
    """Per-sample ``log p_{t_min}(x)`` in nats via the probability-flow ODE: a `LogProbResult`
    (``logp`` ``(B,)``, the mean ``nfe`` and the solver ``stats``; unpacks as ``logp, nfe``).

    Args:
        sde, score_fn: a `dynamics` SDE and ``score_fn(x, t)``.
        x: data ``(B, *event)`` (dequantised, for discrete data).
        method, rtol, atol, **solver_options: passed to `solvers.solve_ode` (any method;
            ``step_size=...`` for fixed steps, ``per_sample=True`` for per-row steps).
        divergence_method: ``'exact'``, ``'hutchinson'`` or ``'hutch++'`` (`solvers.divergence`).
        n_probes, probe, generator: probes of the stochastic estimators, drawn once per solve.
        t_min: start time (default ``sde.t_min``); the flow runs from t_min to ``sde.T``
            (``eps``: its deprecated name).
        prior_logp: log-density of x(T) (default ``sde.prior_logp``).
        return_stats: deprecated; returns the old ``(logp, stats dict)`` tuple.

    A non-finite ``x`` (checked before solving) or result raises `NonFiniteError`.
    """
    with as_input_error(InputError):
        check_sde_and_score(sde, score_fn)
        check_batch("x", x)
        check_generator(generator, x.device)
    check_choice("divergence_method", divergence_method, DIVERGENCE_METHODS)
    with as_input_error(InputError):
        t_min = renamed_argument("eps", eps, "t_min", t_min, "log_likelihood")
        t0 = sde.t_min if t_min is None else check_t_min(t_min, sde.T)
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteError(f"`x` is non-finite ({int((~torch.isfinite(x)).sum())} NaN/inf of "
                             f"{x.numel()} entries); log p_t_min(x) needs finite data",
                             t=torch.tensor(t0), ys=x, stats={"nfe": 0})
    flow = sde.probability_flow(score_fn)
    with torch.no_grad():
        x_T, delta, _, stats = integrate_log_density(
            lambda y, t: flow(t, y), x, t0, sde.T, divergence_method=divergence_method,
            n_probes=n_probes, probe=probe, generator=generator, method=method, rtol=rtol,
            atol=atol, **solver_options)
    B = x.shape[0]
    lp_T = sde.prior_logp(x_T) if prior_logp is None else prior_logp(x_T)
    if not isinstance(lp_T, Tensor) or lp_T.shape != (B,):
        raise InputError(f"`prior_logp(z)` must return a ({B},) tensor; "
                         f"got {describe(lp_T)}")
    logp = lp_T + delta
    if not bool(torch.isfinite(logp).all()):
        bad = int((~torch.isfinite(logp)).sum())
        prior = "prior_logp" if prior_logp is not None else "sde.prior_logp"
        raise NonFiniteError(f"log p_t_min(x) is non-finite for {bad} of {B} rows: the prior "
                             f"log-density of x(T) ({prior}) or the divergence integral "
                             f"returned NaN/inf",
                             t=torch.tensor(sde.T), ys=x_T, stats=stats)
    return with_stats(LogProbResult(logp, mean_nfe(stats["nfe"]), stats), return_stats,
                      "log_likelihood")


def bits_per_dim(sde: LinearSDE, score_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, *,
                 bin_width: Optional[float] = None, **kwargs: Any) -> Tensor:
    """Per-sample bits/dim of a score model (`to_bits_per_dim` of `log_likelihood`), shape
    ``(B,)``; other arguments as `log_likelihood`."""
    _check_bin_width(bin_width)                                # before the solve
    return to_bits_per_dim(log_likelihood(sde, score_fn, x, **kwargs).logp, x[0].numel(),
                           bin_width)
