"""Flow matching: conditional flow matching (Lipman et al. 2023) and OT-CFM with minibatch exact
optimal-transport pairing (Tong et al. 2024), on the `dynamics` interpolation paths.

Clock (the `dynamics.paths` convention): **t = 0 is data, t = T is noise**. A path is
``x_t = alpha(t) x0 + sigma(t) z`` with x0 data and z ~ N(0, I); the linear path is
``x_t = (1 - t) x0 + t z`` with conditional velocity ``u = z - x0``. The network ``v(x, t)``
regresses ``u`` at ``t ~ U[t_min, t_max]``:

    L(θ) = E_{t, x0, z} ‖v_θ(x_t, t) - (a'(t) x0 + s'(t) z)‖²   (mean over all dimensions).

Its minimiser is the marginal velocity ``E[u | x_t]``; L differs from the (intractable) flow
matching loss ``E‖v_θ - v*‖²`` by a constant. OT-CFM re-pairs each minibatch (x0_i, z_π(i))
by the permutation π minimising ``Σ‖x0_i - z_π(i)‖²`` (scipy's ``linear_sum_assignment``).

Sampling integrates ``dx/dt = v(x, t)`` from T down to ``t_min`` with any `solvers` ODE
method, fixed-step or adaptive; the likelihood uses the same instantaneous change-of-variables
routine as FFJORD (`generative.ffjord.integrate_log_density`), exact or stochastic trace.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from dynamics import VPSDE, CosinePath, GaussianPath, LinearPath
from solvers.errors import describe

from .errors import InputError
from .likelihood import (check_data, integrate_log_density, standard_normal_logp,
                         to_bits_per_dim, transport)
from .losses import sample_time
from .randomness import Random, randn
from .results import LogProbResult, SampleResult, mean_nfe, with_stats

Tensor = torch.Tensor

__all__ = ["PATHS", "make_path", "end_times", "ot_pairing", "cfm_loss", "make_fm_loss",
           "fm_sample", "fm_log_likelihood", "fm_bits_per_dim"]

PATHS = ("linear", "cosine", "vp")


def make_path(path: Union[str, GaussianPath]) -> GaussianPath:
    """``'linear'`` (rectified flow, ``(1-t) x0 + t z``), ``'cosine'`` (trigonometric VP path),
    ``'vp'`` (the VP-SDE's kernel, `dynamics.VPSDE()`), or any `dynamics.GaussianPath`."""
    if isinstance(path, GaussianPath):
        return path
    if path == "linear":
        return LinearPath()
    if path == "cosine":
        return CosinePath()
    if path == "vp":
        return VPSDE()
    raise InputError(f"path: expected one of {', '.join(map(repr, PATHS))} or a "
                     f"dynamics.GaussianPath, got {path!r}")


def ot_pairing(x0: Tensor, z: Tensor) -> Tensor:
    """Permutation ``perm`` (int64, ``(B,)``) minimising ``Σ_i ‖x0_i - z_perm[i]‖²``.

    Exact (Hungarian algorithm, scipy). Copies the cost matrix to the host: call it once per
    minibatch, outside any solver loop.
    """
    check_data(x0, None, "x0")
    check_data(z, tuple(x0.shape[1:]), "z")
    if z.shape[0] != x0.shape[0]:
        raise InputError(f"z: expected the batch size of x0 ({x0.shape[0]}), "
                         f"got shape {tuple(z.shape)}")
    from scipy.optimize import linear_sum_assignment
    cost = torch.cdist(x0.detach().flatten(1).double(), z.detach().flatten(1).double()).square()
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return torch.from_numpy(perm).to(x0.device)


def cfm_loss(velocity: Callable[[Tensor, Tensor], Tensor], x0: Tensor, *,
             path: Union[str, GaussianPath] = "linear", ot: bool = False,
             t_min: Optional[float] = None, t_max: Optional[float] = None,
             generator: Random = None, t: Optional[Tensor] = None,
             noise: Optional[Tensor] = None) -> Tensor:
    """Conditional flow-matching loss (mean squared error per dimension), scalar.

    ``x0`` is the data batch (t = 0 end), ``noise`` the N(0, I) batch (t = T end, drawn from
    ``generator`` when None), ``t`` (``(B,)``) drawn U[t_min, t_max] when None. ``ot=True``
    re-pairs noise to data by exact minibatch OT before interpolating (OT-CFM).
    """
    check_data(x0, None, "x0")
    p = make_path(path)
    lo = p.t_min if t_min is None else float(t_min)
    hi = p.T if t_max is None else float(t_max)
    if not (0.0 <= lo < hi <= p.T):
        raise InputError(f"t_min, t_max: expected 0 <= t_min < t_max <= T={p.T:g}, "
                         f"got t_min={t_min!r}, t_max={t_max!r}")
    B = x0.shape[0]
    if noise is None:
        noise = randn(x0.shape, generator, dtype=x0.dtype, device=x0.device)
    else:
        check_data(noise, tuple(x0.shape[1:]), "noise")
    if ot:
        noise = noise[ot_pairing(x0, noise)]
    if t is None:
        t = sample_time(B, lo, hi, like=x0, generator=generator)
    elif not isinstance(t, Tensor) or t.shape != (B,):
        raise InputError(f"t: expected a ({B},) tensor, got {describe(t)}")
    xt, _ = p.perturb(x0, t, noise=noise)
    target = p.target_velocity(x0, noise, t)
    v = velocity(xt, t)
    if not isinstance(v, Tensor) or v.shape != x0.shape:
        raise InputError(f"velocity: expected velocity(x, t) to return x's shape "
                         f"{tuple(x0.shape)}, got {describe(v)}")
    return (v - target).pow(2).mean()


def make_fm_loss(path: Union[str, GaussianPath] = "linear", *, ot: bool = False,
                 t_min: Optional[float] = None, t_max: Optional[float] = None
                 ) -> Callable[[nn.Module, Any, Random], Tensor]:
    """A ``loss_fn(model, batch, rng)`` for `generative.train` (``ot=True``: OT-CFM, paired
    within each process's share of the batch)."""
    p = make_path(path)

    def loss_fn(model: nn.Module, batch: Any, rng: Random) -> Tensor:
        x0 = batch[0] if isinstance(batch, (tuple, list)) else batch
        return cfm_loss(model, x0, path=p, ot=ot, t_min=t_min, t_max=t_max, generator=rng)

    return loss_fn


def end_times(path: Union[str, GaussianPath], t_min: Optional[float] = None
              ) -> Tuple[float, float]:
    """``(t_min, T)``: where sampling ends and the likelihood solve starts (``t_min`` None:
    the path's ``t_min``, 1e-3 for the VP-SDE, whose d sigma/dt ~ 1/sigma at t = 0, and 0 for
    the flow-matching paths), and the noise end T."""
    p = make_path(path)
    lo = p.t_min if t_min is None else float(t_min)
    if not 0.0 <= lo < p.T:
        raise InputError(f"t_min: expected 0 <= t_min < T={p.T:g}, got {t_min!r}")
    return lo, p.T


@torch.no_grad()
def fm_sample(velocity: Callable[[Tensor, Tensor], Tensor], shape: Any = None, *,
              path: Union[str, GaussianPath] = "linear", z: Optional[Tensor] = None,
              method: str = "dopri5", t_min: Optional[float] = None,
              generator: Optional[torch.Generator] = None, dtype: Optional[torch.dtype] = None,
              device: Any = None, return_stats: bool = False, **solver_kwargs: Any
              ) -> SampleResult:
    """Samples: ``z ~ N(0, I)`` of ``shape`` (or the given ``z``) integrated from T to
    ``t_min`` with `solvers.solve_ode` (``method`` any ODE method; ``step_size=...`` for fixed
    steps, ``rtol``/``atol`` for adaptive ones). Returns a `SampleResult` (``x``, the mean
    ``nfe``, the solver ``stats``; unpacks as ``x, nfe``); ``return_stats=True`` (deprecated)
    the old ``(x, stats)`` tuple."""
    p = make_path(path)
    lo, hi = end_times(p, t_min)
    if z is None:
        if shape is None:
            raise InputError("shape: expected (B, *event) when z is not given, got None")
        z = p.prior_sample(tuple(shape), generator=generator, dtype=dtype, device=device)
    check_data(z, None, "z")
    return with_stats(transport(velocity, z, hi, lo, method=method, **solver_kwargs),
                      return_stats, "fm_sample")


def fm_log_likelihood(velocity: Callable[[Tensor, Tensor], Tensor], x: Tensor, *,
                      path: Union[str, GaussianPath] = "linear",
                      divergence_method: str = "exact", n_probes: int = 1,
                      probe: str = "rademacher", t_min: Optional[float] = None,
                      method: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5,
                      generator: Optional[torch.Generator] = None, return_stats: bool = False,
                      **solver_options: Any) -> LogProbResult:
    """``log p(x)`` in nats, ``(B,)``: integrate ``[x, Δ]`` from ``t_min`` to T in one solve
    and add ``log N(x(T); 0, I)`` (the base; for the VP-SDE path alpha(T) is small but not
    zero, which this ignores as its sampler does). Returns a `LogProbResult` (``logp``, the
    mean ``nfe``, the solver ``stats``; unpacks as ``logp, nfe``); ``return_stats=True``
    (deprecated) the old ``(logp, stats)`` tuple."""
    p = make_path(path)
    lo, hi = end_times(p, t_min)
    check_data(x, None)
    with torch.no_grad():
        xT, delta, _, stats = integrate_log_density(
            velocity, x, lo, hi, divergence_method=divergence_method, n_probes=n_probes,
            probe=probe, generator=generator, method=method, rtol=rtol, atol=atol,
            **solver_options)
    logp = standard_normal_logp(xT) + delta
    return with_stats(LogProbResult(logp, mean_nfe(stats["nfe"]), stats), return_stats,
                      "fm_log_likelihood")


def fm_bits_per_dim(velocity: Callable[[Tensor, Tensor], Tensor], x: Tensor, *,
                    bin_width: Optional[float] = None, **kwargs: Any) -> Tensor:
    """Bits/dim ``-log p(x)/(D ln 2) - log2(bin_width)`` from `fm_log_likelihood`."""
    return to_bits_per_dim(fm_log_likelihood(velocity, x, **kwargs).logp, x[0].numel(),
                           bin_width)
