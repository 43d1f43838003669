"""FFJORD: continuous normalizing flows with a free-form Jacobian (Grathwohl et al. 2019),
optionally regularised as RNODE (Finlay et al. 2020).

Clock: as everywhere in sdeflow, **t = 0 is data and t = T is the base** N(0, I). The flow
``dx/dt = f(x, t)`` carries a data point x(0) = x to z = x(T); along it
``d log p_t(x(t))/dt = -div f``, so

    log p_data(x) = log N(z; 0, I) + ∫_0^T div f(x(t), t) dt.

One `solvers.solve_ode` call integrates the concatenated state ``[x, Δ, E_k, E_J]`` of shape
``(B, D + 1 + n_reg)``: ``Δ = ∫ div f``, and when regularised the kinetic energy
``E_k = ∫ ‖f‖²`` and the Jacobian Frobenius term ``E_J = ∫ ‖∇f‖²_F`` (RNODE), the latter
estimated by ``‖εᵀ∇f‖²`` with the *same* probe ε and the same vector–Jacobian product as the
Hutchinson trace ``εᵀ∇f ε`` (exactly, from the D identity VJPs, in ``'exact'`` mode).

Divergence: `solvers.divergence` (``'exact'``, ``'hutchinson'`` with Rademacher or Gaussian
probes, ``'hutch++'``); probes are drawn once per solve and fixed for the whole solve (and its
adjoint). When the Frobenius regulariser is on, the trace and ``εᵀ∇f`` come from the same
VJPs (``divergence(..., return_vjp=True)``).

Gradients: ``gradient='backsolve'`` (continuous adjoint, seminorm by default, as
`solvers.odeint_adjoint`), ``'checkpoint'`` or ``'direct'``. NFE of the last forward solve and
of the backward pass (function evaluations of the ODE field made while backpropagating:
adjoint solve for backsolve, recomputation for checkpoint, 0 for direct) are reported by
:meth:`CNF.density` (forward, with the log-density and the RNODE integrals),
:meth:`CNF.nfe_stats`, and by the loss closure :func:`make_ffjord_loss` in its logged extras.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from dynamics.checks import check_choice
from solvers import DIVERGENCE_METHODS, PROBE_TYPES
from solvers.errors import describe

from .errors import InputError
from .likelihood import (GRADIENT_MODES, CallCounter, check_data, integrate_log_density,
                         standard_normal_logp, to_bits_per_dim, transport)
from .nets import make_ffjord_net
from .randomness import Random
from .results import CNFDensity, SampleResult, with_stats

Tensor = torch.Tensor

__all__ = ["CNF", "make_ffjord_loss"]


# --------------------------------------------------------------------------- the model

class CNF(nn.Module):
    """FFJORD continuous normalizing flow ``dx/dt = net(x, t)``, data at t=0, N(0, I) at t=T.

    Args:
        net: dynamics network ``net(x, t)`` (default `make_ffjord_net(event_shape)`).
        event_shape: shape of one sample.
        T: integration time.
        divergence_method: ``'exact'``, ``'hutchinson'`` or ``'hutch++'`` used in training;
            ``'auto'`` = exact when D <= ``exact_max_dim`` else hutchinson.
        n_probes, probe: Hutchinson/Hutch++ probes (Rademacher default), fixed per solve.
        kinetic, jacobian: RNODE weights λ_K, λ_J of ``∫‖f‖²`` and ``∫‖∇f‖²_F`` (0 = off).
        gradient: ``'backsolve'`` (adjoint, seminorm), ``'checkpoint'`` or ``'direct'``.
        method, rtol, atol: the solver (any `solvers` ODE method), **solver_options passed on.
    """

    def __init__(self, event_shape: Union[int, Sequence[int]], net: Optional[nn.Module] = None,
                 *, T: float = 1.0, divergence_method: str = "auto", exact_max_dim: int = 8,
                 n_probes: int = 1, probe: str = "rademacher", kinetic: float = 0.0,
                 jacobian: float = 0.0, gradient: str = "backsolve", method: str = "dopri5",
                 rtol: float = 1e-5, atol: float = 1e-5,
                 adjoint_options: Optional[Dict[str, Any]] = None,
                 **solver_options: Any) -> None:
        super().__init__()
        self.event_shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        if not self.event_shape or any(not isinstance(s, int) or s < 1 for s in self.event_shape):
            raise InputError(f"event_shape: expected positive ints, got {event_shape!r}")
        self.net = net if net is not None else make_ffjord_net(self.event_shape)
        if not isinstance(self.net, nn.Module):
            raise InputError(f"net: expected an nn.Module net(x, t), got {describe(net)}")
        if not (isinstance(T, (int, float)) and T > 0):
            raise InputError(f"T: expected a positive number, got {T!r}")
        self.T = float(T)
        check_choice("divergence_method", divergence_method, ("auto",) + DIVERGENCE_METHODS)
        check_choice("probe", probe, PROBE_TYPES)
        check_choice("gradient", gradient, GRADIENT_MODES)
        for name, lam in (("kinetic", kinetic), ("jacobian", jacobian)):
            if not isinstance(lam, (int, float)) or lam < 0 or not math.isfinite(lam):
                raise InputError(f"{name}: expected a weight >= 0, got {lam!r}")
        if jacobian > 0 and divergence_method == "hutch++":
            raise InputError("divergence_method: the Jacobian-Frobenius regulariser "
                             "supports 'exact' or 'hutchinson', got 'hutch++'")
        self.D = math.prod(self.event_shape)
        if divergence_method == "auto":
            divergence_method = "exact" if self.D <= exact_max_dim else "hutchinson"
        self.divergence_method, self.n_probes, self.probe = divergence_method, n_probes, probe
        self.kinetic, self.jacobian = float(kinetic), float(jacobian)
        self.gradient, self.method, self.rtol, self.atol = gradient, method, rtol, atol
        self.adjoint_options = adjoint_options
        self.solver_options = solver_options
        self._counter = CallCounter()
        self._calls_after_forward = 0
        self._forward_nfe = 0

    # ---- density
    def log_prob(self, x: Tensor, **kwargs: Any) -> Tensor:
        """``log p(x)`` in nats, shape ``(B,)`` (`density`'s options; the RNODE integrals are
        integrated only when gradients are on)."""
        return self.density(x, with_regs=torch.is_grad_enabled(), **kwargs).logp

    def density(self, x: Tensor, *, with_regs: bool = True,
                divergence_method: Optional[str] = None, n_probes: Optional[int] = None,
                generator: Random = None, **overrides: Any) -> CNFDensity:
        """One solve: ``log p(x)``, the RNODE integrals (``with_regs``, for the weights that
        are > 0) and the NFE. ``divergence_method`` and ``n_probes`` override the training
        ones (e.g. ``'exact'`` for evaluation); ``generator`` draws the probes; ``overrides``
        replace solver settings (``method``, ``rtol``, ``atol``, ``gradient``,
        ``step_size``...)."""
        check_data(x, self.event_shape)
        dm = self.divergence_method if divergence_method is None else divergence_method
        kw: Dict[str, Any] = dict(method=self.method, rtol=self.rtol, atol=self.atol,
                                  gradient=self.gradient, adjoint_options=self.adjoint_options,
                                  **self.solver_options)
        kw.update(overrides)
        if kw["gradient"] != "backsolve":
            kw.pop("adjoint_options", None)
        z, delta, regs, stats = integrate_log_density(
            self.net, x, 0.0, self.T, divergence_method=dm,
            n_probes=self.n_probes if n_probes is None else n_probes,
            probe=self.probe, generator=generator,
            kinetic=with_regs and self.kinetic > 0, jacobian=with_regs and self.jacobian > 0,
            counter=self._counter, **kw)
        self._forward_nfe = int(stats["nfe"])
        self._calls_after_forward = self._counter.calls
        return CNFDensity(standard_normal_logp(z) + delta, self._forward_nfe, regs)

    def nfe_stats(self) -> Dict[str, int]:
        """``{'nfe': forward NFE of the last log_prob, 'nfe_backward': field evaluations made
        since it returned}`` — read it after ``loss.backward()``."""
        return {"nfe": self._forward_nfe,
                "nfe_backward": self._counter.calls - self._calls_after_forward}

    def bits_per_dim(self, x: Tensor, *, bin_width: Optional[float] = None,
                     **kwargs: Any) -> Tensor:
        """``-log p(x) / (D ln 2) - log2(bin_width)`` per sample (no correction when
        ``bin_width`` is None, i.e. continuous data)."""
        logp = self.log_prob(x, **kwargs)
        return to_bits_per_dim(logp, self.D, bin_width)

    def forward(self, x: Tensor) -> Tensor:
        return self.log_prob(x)

    # ---- sampling
    @torch.no_grad()
    def sample(self, n: int, *, generator: Optional[torch.Generator] = None,
               z: Optional[Tensor] = None, method: Optional[str] = None,
               dtype: Optional[torch.dtype] = None, device: Any = None,
               return_stats: bool = False, **solver_kwargs: Any) -> SampleResult:
        """Draw ``z ~ N(0, I)`` (or use ``z``) and integrate ``dx/dt = net(x, t)`` from T to 0:
        a `SampleResult` (``x``, the mean ``nfe``, the solver ``stats``; unpacks as ``x, nfe``;
        ``return_stats=True``, deprecated: the old ``(x, stats)`` tuple)."""
        if z is None:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise InputError(f"n: expected a positive int, got {n!r}")
            p = next(self.net.parameters(), None)
            dtype = dtype or (p.dtype if p is not None else torch.get_default_dtype())
            device = device or (p.device if p is not None else None)
            z = torch.randn((n, *self.event_shape), generator=generator, dtype=dtype,
                            device=device)
        check_data(z, self.event_shape, "z")
        kw = dict(rtol=self.rtol, atol=self.atol, **self.solver_options)
        kw.update(solver_kwargs)
        return with_stats(transport(self.net, z, self.T, 0.0, method=method or self.method,
                                    **kw), return_stats, "CNF.sample")


# --------------------------------------------------------------------------- loss closure

def make_ffjord_loss(*, bin_width: Optional[float] = None, units: str = "nats"
                     ) -> Callable[[CNF, Tensor, Random], Tuple[Tensor, Dict[str, Tensor]]]:
    """A ``loss_fn(model, batch, rng)`` for `generative.train`: mean NLL (``units``
    ``'nats'`` or ``'bpd'``) + λ_K·mean E_k + λ_J·mean E_J, with extras ``nll``, ``bpd``,
    ``kinetic``, ``jacobian``, ``nfe`` (this step's forward solve) and ``nfe_backward`` (this
    step's backward pass: a zero-argument callable, read by `generative.train` after
    ``loss.backward()``; call it after backpropagating when using the closure directly)."""
    check_choice("units", units, ("nats", "bpd"))

    def loss_fn(model: CNF, batch: Any, rng: Random) -> Tuple[Tensor, Dict[str, Tensor]]:
        if not isinstance(model, CNF):
            raise InputError(f"model: expected a generative.ffjord.CNF, "
                             f"got {describe(model)}")
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        d = model.density(x, generator=rng)
        logp, regs = d.logp, d.regs
        nll = -logp.mean()
        bpd = to_bits_per_dim(logp, model.D, bin_width).mean()
        loss = nll if units == "nats" else bpd
        extras: Dict[str, Any] = {"nll": nll.detach(), "bpd": bpd.detach(),
                                  "nfe": torch.tensor(float(d.nfe))}
        if "kinetic" in regs:
            k = regs["kinetic"].mean()
            loss = loss + model.kinetic * k
            extras["kinetic"] = k.detach()
        if "jacobian" in regs:
            j = regs["jacobian"].mean()
            loss = loss + model.jacobian * j
            extras["jacobian"] = j.detach()
        extras["nfe_backward"] = lambda: torch.tensor(float(model.nfe_stats()["nfe_backward"]))
        return loss, extras

    return loss_fn
