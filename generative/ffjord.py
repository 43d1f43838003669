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
:meth:`CNF.nfe_stats`, and by the loss closure :func:`make_ffjord_loss` in its logged extras.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from solvers import DIVERGENCE_METHODS, PROBE_TYPES, divergence, solve_ode
from solvers.errors import InvalidInputError, describe

from .randomness import Random, draw_probes

Tensor = torch.Tensor
VelocityFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["CNF", "ODENet", "ConvODENet", "make_ffjord_net", "make_ffjord_loss",
           "integrate_log_density", "standard_normal_logp", "GRADIENT_MODES"]

GRADIENT_MODES = ("backsolve", "checkpoint", "direct")


def standard_normal_logp(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` per row, shape ``(B,)``."""
    D = z[0].numel()
    return -0.5 * z.reshape(z.shape[0], -1).pow(2).sum(1) - 0.5 * D * math.log(2 * math.pi)


# --------------------------------------------------------------------------- networks

class _ConcatSquash(nn.Module):
    """``Linear(x) * sigmoid(W_g t + b_g) + W_b t`` (FFJORD's ConcatSquashLinear)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)
        self.gate = nn.Linear(1, d_out)
        self.bias = nn.Linear(1, d_out, bias=False)

    def forward(self, h: Tensor, t: Tensor) -> Tensor:
        tt = t.reshape(-1, 1).to(h.dtype)
        return self.lin(h) * torch.sigmoid(self.gate(tt)) + self.bias(tt)


class ODENet(nn.Module):
    """FFJORD's dynamics MLP for vectors: concat-squash layers with smooth (tanh) activations,
    ``net(x, t)`` with ``x`` of shape ``(B, *event)`` and ``t`` 0-dim or ``(B,)``."""

    def __init__(self, event_shape: Union[int, Sequence[int]], hidden: Sequence[int] = (64, 64, 64),
                 activation: str = "tanh") -> None:
        super().__init__()
        self.event_shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        acts = {"tanh": nn.Tanh, "softplus": nn.Softplus}
        if activation not in acts:
            raise ValueError(f"activation: expected one of {list(acts)}, got {activation!r}")
        dim = math.prod(self.event_shape)
        sizes = [dim, *hidden, dim]
        self.layers = nn.ModuleList(_ConcatSquash(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = acts[activation]()

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x: expected shape (B, *{self.event_shape}), got {tuple(x.shape)}")
        t = _batch_time(t, x)
        h = x.flatten(1)
        for i, layer in enumerate(self.layers):
            h = layer(h, t)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h.view_as(x)


class ConvODENet(nn.Module):
    """Small convolutional dynamics net for images ``(B, C, H, W)``: 3x3 convolutions with the
    time appended as a constant channel, softplus activations (FFJORD's ConcatConv2d)."""

    def __init__(self, in_channels: int = 1, hidden: Sequence[int] = (32, 32, 32)) -> None:
        super().__init__()
        self.in_channels = in_channels
        sizes = [in_channels, *hidden, in_channels]
        self.convs = nn.ModuleList(nn.Conv2d(a + 1, b, 3, padding=1)
                                   for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = nn.Softplus()

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected shape (B, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        t = _batch_time(t, x)
        h = x
        for i, conv in enumerate(self.convs):
            tc = t.view(-1, 1, 1, 1).expand(h.shape[0], 1, *h.shape[2:])
            h = conv(torch.cat([h, tc], 1))
            if i < len(self.convs) - 1:
                h = self.act(h)
        return h


def make_ffjord_net(event_shape: Union[int, Sequence[int]], **kwargs: Any) -> nn.Module:
    """`ODENet` for vector events ``(d,)``, `ConvODENet` for image events ``(C, H, W)``."""
    shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
    if len(shape) == 3:
        return ConvODENet(shape[0], **kwargs)
    return ODENet(shape, **kwargs)


def _batch_time(t: Union[Tensor, float], x: Tensor) -> Tensor:
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


class _Counter:
    def __init__(self) -> None:
        self.calls = 0


class _AugmentedField(nn.Module):
    """``[x, Δ, (E_k), (E_J)]' = [f, div f, (‖f‖²), (‖∇f‖²_F)]`` on a ``(B, D + 1 + r)`` state.

    An `nn.Module` owning the velocity net, so backsolve finds its parameters; built once per
    solve with that solve's fixed probes.
    """

    def __init__(self, net: nn.Module, event_shape: Tuple[int, ...], method: str,
                 probes: Optional[Tensor], kinetic: bool, jacobian: bool, counter: _Counter,
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
        tb = t.expand(B) if t.dim() == 0 else t
        fn = lambda z: self.net(z, tb)  # noqa: E731
        f, div, *vjp = divergence(fn, x, method=self.method, eps=self.probes,
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


def _check_choice(name: str, value: Any, valid: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in valid:
        raise InvalidInputError(
            f"{name}: expected one of {', '.join(repr(v) for v in valid)}, got {value!r}")


def _check_data(x: Any, event_shape: Optional[Tuple[int, ...]], name: str = "x") -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise InvalidInputError(f"{name}: expected a floating-point tensor (B, *event), "
                                f"got {describe(x)}")
    if event_shape is not None and tuple(x.shape[1:]) != tuple(event_shape):
        raise InvalidInputError(f"{name}: expected event shape {tuple(event_shape)} (the "
                                f"model's), got a tensor of shape {tuple(x.shape)}")


def integrate_log_density(velocity: VelocityFn, x: Tensor, t0: float, t1: float, *,
                          divergence_method: str = "exact", n_probes: int = 1,
                          probe: str = "rademacher", generator: Random = None,
                          kinetic: bool = False, jacobian: bool = False,
                          method: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5,
                          gradient: str = "direct",
                          adjoint_options: Optional[Dict[str, Any]] = None,
                          counter: Optional[_Counter] = None, **solver_options: Any
                          ) -> Tuple[Tensor, Tensor, Dict[str, Tensor], Dict[str, Any]]:
    """Instantaneous change of variables in ONE solve from ``t0`` to ``t1``.

    ``velocity(x, t)`` (an `nn.Module` when gradients to its parameters are wanted with
    ``gradient='backsolve'``) with ``t`` a ``(B,)`` tensor. Returns ``(x(t1), Δ, regs, stats)``
    with ``Δ = ∫_{t0}^{t1} div v dt`` (so ``log p_{t0}(x) = log p_{t1}(x(t1)) + Δ``), ``regs``
    holding ``'kinetic'`` / ``'jacobian'`` integrals when requested, and the solver stats.
    """
    _check_data(x, None)
    _check_choice("divergence_method", divergence_method, DIVERGENCE_METHODS)
    _check_choice("probe", probe, PROBE_TYPES)
    _check_choice("gradient", gradient, GRADIENT_MODES)
    if jacobian and divergence_method == "hutch++":
        raise InvalidInputError("divergence_method: the Jacobian-Frobenius regulariser shares "
                                "its probes with the trace and supports 'exact' or "
                                "'hutchinson', got 'hutch++'")
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise InvalidInputError(f"n_probes: expected an int >= 1, got {n_probes!r}")
    probes = None
    if divergence_method != "exact":
        probes = draw_probes(x, n_probes, probe, generator)
    counter = counter if counter is not None else _Counter()
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
    return x1, delta, regs, sol.stats


class _FnModule(nn.Module):
    def __init__(self, fn: VelocityFn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.fn(x, t)


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
            raise InvalidInputError(f"event_shape: expected positive ints, got {event_shape!r}")
        self.net = net if net is not None else make_ffjord_net(self.event_shape)
        if not isinstance(self.net, nn.Module):
            raise InvalidInputError(f"net: expected an nn.Module net(x, t), got {describe(net)}")
        if not (isinstance(T, (int, float)) and T > 0):
            raise InvalidInputError(f"T: expected a positive number, got {T!r}")
        self.T = float(T)
        _check_choice("divergence_method", divergence_method, ("auto",) + DIVERGENCE_METHODS)
        _check_choice("probe", probe, PROBE_TYPES)
        _check_choice("gradient", gradient, GRADIENT_MODES)
        for name, lam in (("kinetic", kinetic), ("jacobian", jacobian)):
            if not isinstance(lam, (int, float)) or lam < 0 or not math.isfinite(lam):
                raise InvalidInputError(f"{name}: expected a weight >= 0, got {lam!r}")
        if jacobian > 0 and divergence_method == "hutch++":
            raise InvalidInputError("divergence_method: the Jacobian-Frobenius regulariser "
                                    "supports 'exact' or 'hutchinson', got 'hutch++'")
        self.D = math.prod(self.event_shape)
        if divergence_method == "auto":
            divergence_method = "exact" if self.D <= exact_max_dim else "hutchinson"
        self.divergence_method, self.n_probes, self.probe = divergence_method, n_probes, probe
        self.kinetic, self.jacobian = float(kinetic), float(jacobian)
        self.gradient, self.method, self.rtol, self.atol = gradient, method, rtol, atol
        self.adjoint_options = adjoint_options
        self.solver_options = solver_options
        self._counter = _Counter()
        self._calls_after_forward = 0
        self.last_stats: Dict[str, Any] = {}

    # ---- density
    def log_prob(self, x: Tensor, *, divergence_method: Optional[str] = None,
                 n_probes: Optional[int] = None, generator: Random = None,
                 return_regs: bool = False,
                 **overrides: Any) -> Union[Tensor, Tuple[Tensor, Dict[str, Tensor]]]:
        """``log p(x)`` in nats, shape ``(B,)``. ``divergence_method`` and ``n_probes``
        override the training ones (e.g. ``'exact'`` for evaluation); ``overrides`` replace
        solver settings (``method``, ``rtol``, ``atol``, ``gradient``, ``step_size``...)."""
        _check_data(x, self.event_shape)
        dm = self.divergence_method if divergence_method is None else divergence_method
        regs_on = return_regs or torch.is_grad_enabled()
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
            kinetic=regs_on and self.kinetic > 0, jacobian=regs_on and self.jacobian > 0,
            counter=self._counter, **kw)
        self.last_stats = {"nfe": int(stats["nfe"])}
        self._calls_after_forward = self._counter.calls
        logp = standard_normal_logp(z) + delta
        return (logp, regs) if return_regs else logp

    def nfe_stats(self) -> Dict[str, int]:
        """``{'nfe': forward NFE of the last log_prob, 'nfe_backward': field evaluations made
        since it returned}`` — read it after ``loss.backward()``."""
        return {"nfe": self.last_stats.get("nfe", 0),
                "nfe_backward": self._counter.calls - self._calls_after_forward}

    def bits_per_dim(self, x: Tensor, *, bin_width: Optional[float] = None,
                     **kwargs: Any) -> Tensor:
        """``-log p(x) / (D ln 2) - log2(bin_width)`` per sample (no correction when
        ``bin_width`` is None, i.e. continuous data)."""
        logp = self.log_prob(x, **kwargs)
        return _to_bpd(logp, self.D, bin_width)

    def forward(self, x: Tensor) -> Tensor:
        return self.log_prob(x)

    # ---- sampling
    @torch.no_grad()
    def sample(self, n: int, *, generator: Optional[torch.Generator] = None,
               z: Optional[Tensor] = None, method: Optional[str] = None,
               dtype: Optional[torch.dtype] = None, device: Any = None,
               return_stats: bool = False, **solver_kwargs: Any
               ) -> Union[Tensor, Tuple[Tensor, Dict[str, Any]]]:
        """Draw ``z ~ N(0, I)`` (or use ``z``) and integrate ``dx/dt = net(x, t)`` from T to 0
        (``return_stats``: also the solver stats, e.g. ``nfe``)."""
        if z is None:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise InvalidInputError(f"n: expected a positive int, got {n!r}")
            p = next(self.net.parameters(), None)
            dtype = dtype or (p.dtype if p is not None else torch.get_default_dtype())
            device = device or (p.device if p is not None else None)
            z = torch.randn((n, *self.event_shape), generator=generator, dtype=dtype,
                            device=device)
        _check_data(z, self.event_shape, "z")
        kw = dict(rtol=self.rtol, atol=self.atol, **self.solver_options)
        kw.update(solver_kwargs)
        return transport(self.net, z, self.T, 0.0, method=method or self.method,
                         return_stats=return_stats, **kw)


def transport(velocity: VelocityFn, x: Tensor, t0: float, t1: float, *, method: str = "dopri5",
              return_stats: bool = False, **solver_kwargs: Any
              ) -> Union[Tensor, Tuple[Tensor, Dict[str, Any]]]:
    """Integrate ``dx/dt = velocity(x, t)`` from ``t0`` to ``t1`` (either direction)."""
    B = x.shape[0]

    def f(t: Tensor, y: Tensor) -> Tensor:
        return velocity(y, t.expand(B) if t.dim() == 0 else t)

    ts = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
    sol = solve_ode(f, x, ts, method=method, **solver_kwargs)
    return (sol.ys[-1], sol.stats) if return_stats else sol.ys[-1]


def _to_bpd(logp: Tensor, D: int, bin_width: Optional[float]) -> Tensor:
    if bin_width is not None and (isinstance(bin_width, bool)
                                  or not isinstance(bin_width, (int, float)) or bin_width <= 0):
        raise InvalidInputError(f"bin_width: expected a positive number or None, "
                                f"got {bin_width!r}")
    bpd = -logp / (D * math.log(2.0))
    return bpd - math.log2(bin_width) if bin_width is not None else bpd


# --------------------------------------------------------------------------- loss closure

def make_ffjord_loss(*, bin_width: Optional[float] = None, units: str = "nats"
                     ) -> Callable[[CNF, Tensor, Random], Tuple[Tensor, Dict[str, Tensor]]]:
    """A ``loss_fn(model, batch, rng)`` for `generative.train`: mean NLL (``units``
    ``'nats'`` or ``'bpd'``) + λ_K·mean E_k + λ_J·mean E_J, with extras ``nll``, ``bpd``,
    ``kinetic``, ``jacobian``, ``nfe`` (this step's forward solve) and ``nfe_backward`` (this
    step's backward pass: a zero-argument callable, read by `generative.train` after
    ``loss.backward()``; call it after backpropagating when using the closure directly)."""
    _check_choice("units", units, ("nats", "bpd"))

    def loss_fn(model: CNF, batch: Any, rng: Random) -> Tuple[Tensor, Dict[str, Tensor]]:
        if not isinstance(model, CNF):
            raise InvalidInputError(f"model: expected a generative.ffjord.CNF, "
                                    f"got {describe(model)}")
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        logp, regs = model.log_prob(x, generator=rng, return_regs=True)
        nll = -logp.mean()
        bpd = _to_bpd(logp, model.D, bin_width).mean()
        loss = nll if units == "nats" else bpd
        extras: Dict[str, Any] = {"nll": nll.detach(), "bpd": bpd.detach(),
                                  "nfe": torch.tensor(float(model.last_stats["nfe"]))}
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
