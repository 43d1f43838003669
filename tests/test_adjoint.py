"""Tests of differentiation through ODE solves: `odeint_adjoint` / ``gradient='backsolve'``
(continuous adjoint), ``gradient='checkpoint'`` and ``gradient='direct'``.

How the tolerances were chosen (float64, rtol = atol = tol):

* backsolve vs a tight reference (direct backprop at rtol = atol = 1e-12): the adjoint is an
  accurate solve of the continuous gradient, measured within 0.3-3 x tol; asserted <= 10 x tol.
* backsolve vs direct backprop at the same tol: direct backprop differentiates the discrete
  adaptive solution (with detached step control), whose gradient is less accurate than the
  solution itself: measured up to ~40 x tol for y0 and parameters and ~400 x tol for the
  output times (the derivative of the last clamped step / of the dense output with respect
  to its time is one order less accurate). Asserted <= 100 x tol and <= 1000 x tol.
* fixed-step rk4: backsolve and direct differ by the O(h^4) discretisation of the adjoint
  system; checked by size at h = 0.05 and by the convergence ratio (16 expected, > 10 asserted).
* checkpoint vs direct: the same arithmetic on the same accepted steps (step control is
  detached); measured bit-identical, asserted to 1e-10 relative.

All errors are relative to the largest entry of the reference gradient of the same tensor.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import pytest
import torch
from torch import nn

from solvers import (BacksolveAdjoint, CheckpointAdjoint, DirectAdjoint, FunctionOutputError,
                     InvalidInputError, odeint, odeint_adjoint, solve_ode)

F64 = torch.float64


# --------------------------------------------------------------------------- helpers

class MLPField(nn.Module):
    """Neural ODE vector field f(t, y) = MLP([y, t]), time-dependent so dL/dt is non-trivial.

    ``t`` is 0-dim (joint mode) or ``(B,)`` (per-sample mode). Counts calls of ``forward``.
    """

    def __init__(self, d: int = 3, hidden: int = 16, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(d + 1, hidden), nn.Tanh(),
                                 nn.Linear(hidden, d)).to(F64)
        self.calls = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        tt = t.reshape(-1, 1).expand(y.shape[0], 1) if t.dim() == 0 else t.reshape(-1, 1)
        return self.net(torch.cat([y, tt.to(y.dtype)], dim=-1))


class TupleField(nn.Module):
    """Second-order neural ODE as a tuple state: x' = v, v' = MLP([x, v, t]) - 0.5 v."""

    def __init__(self, d: int = 2, hidden: int = 16, seed: int = 1) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(2 * d + 1, hidden), nn.Tanh(),
                                 nn.Linear(hidden, d)).to(F64)

    def forward(self, t, state):
        x, v = state
        tt = t.reshape(1, 1).expand(x.shape[0], 1)
        return v, self.net(torch.cat([x, v, tt], dim=-1)) - 0.5 * v


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max |a - ref| / max |ref|."""
    return float((a - ref).abs().max() / ref.abs().max())


def gradients(field: nn.Module, y0, t: torch.Tensor, weights, *, gradient: str,
              method: str, tol: float = 1e-9, extra: Optional[Sequence[torch.Tensor]] = None,
              **kw) -> Dict[str, object]:
    """Gradients of L = Σ_i <W_i, y(t_i)> w.r.t. y0 (tensor or tuple), t and the field's
    parameters, with the solution's stats under ``'stats'``."""
    ys0 = tuple(y.detach().clone().requires_grad_(True) for y in y0) \
        if isinstance(y0, tuple) else y0.detach().clone().requires_grad_(True)
    tt = t.detach().clone().requires_grad_(True)
    sol = solve_ode(field, ys0, tt, method=method, rtol=tol, atol=tol, gradient=gradient, **kw)
    ys = sol.ys if isinstance(sol.ys, tuple) else (sol.ys,)
    ws = weights if isinstance(weights, tuple) else (weights,)
    loss = sum((y * w).sum() for y, w in zip(ys, ws))
    leaves = list(ys0) if isinstance(ys0, tuple) else [ys0]
    params = list(field.parameters())
    g = torch.autograd.grad(loss, leaves + [tt] + params)
    out = {f"y0[{i}]": g[i] for i in range(len(leaves))}
    out["t"] = g[len(leaves)]
    for (name, _), gp in zip(field.named_parameters(), g[len(leaves) + 1:]):
        out[name] = gp
    out["stats"] = sol.stats
    return out


def compare(got: Dict[str, object], ref: Dict[str, object]) -> Dict[str, float]:
    return {k: rel_err(got[k], ref[k]) for k in ref if k != "stats"}


def problem(t_values: List[float], B: int = 4, d: int = 3, seed: int = 0):
    torch.manual_seed(seed + 100)
    y0 = torch.randn(B, d, dtype=F64)
    t = torch.tensor(t_values, dtype=F64)
    w = torch.randn(len(t_values), B, d, dtype=F64)
    return y0, t, w


FORWARD_T = [0.0, 0.3, 0.7, 1.0]
REVERSE_T = [1.0, 0.6, 0.2, -0.1]


# --------------------------------------------------------------------------- backsolve vs direct

@pytest.mark.parametrize("t_values", [FORWARD_T, REVERSE_T], ids=["forward", "reverse"])
def test_backsolve_dopri5_matches_direct_and_reference(t_values):
    tol = 1e-9
    field = MLPField()
    y0, t, w = problem(t_values)
    adj = gradients(field, y0, t, w, gradient="backsolve", method="dopri5", tol=tol)
    direct = gradients(field, y0, t, w, gradient="direct", method="dopri5", tol=tol)
    ref = gradients(field, y0, t, w, gradient="direct", method="dopri5", tol=1e-12)
    assert set(adj) == set(ref) and len(ref) == 7  # y0, t, 4 parameter tensors, stats

    vs_ref = compare(adj, ref)
    assert max(vs_ref.values()) <= 10 * tol, vs_ref
    vs_direct = compare(adj, direct)
    for name, err in vs_direct.items():
        assert err <= (1000 if name == "t" else 100) * tol, (name, vs_direct)
    # every output time gets its own gradient (dL/dt_i = <W_i, f(t_i, y_i)> for i > 0)
    assert (adj["t"].abs() > 1e-3).all()

    stats = adj["stats"]
    assert int(stats["nfe"]) == int(direct["stats"]["nfe"])  # same forward solve
    assert isinstance(stats["nfe_backward"], int) and stats["nfe_backward"] > int(stats["nfe"])


@pytest.mark.parametrize("t_values", [FORWARD_T, REVERSE_T], ids=["forward", "reverse"])
def test_backsolve_rk4_converges_to_direct_at_fourth_order(t_values):
    field = MLPField()
    y0, t, w = problem(t_values)
    errs = {}
    for h in (0.1, 0.05):
        adj = gradients(field, y0, t, w, gradient="backsolve", method="rk4", step_size=h)
        direct = gradients(field, y0, t, w, gradient="direct", method="rk4", step_size=h)
        errs[h] = max(compare(adj, direct).values())
        n = math.ceil(abs(t_values[-1] - t_values[0]) / h - 1e-9)
        assert int(adj["stats"]["nfe"]) == 4 * n
        assert adj["stats"]["nfe_backward"] == 4 * sum(
            math.ceil(abs(b - a) / h - 1e-9) for a, b in zip(t_values[:-1], t_values[1:]))
    # measured 5.1e-8 / 3.2e-9 (ratio 16.0 = 2^4)
    assert errs[0.05] <= 1e-8, errs
    assert errs[0.1] / errs[0.05] > 10, errs


def test_backsolve_rk4_on_output_grid_matches_direct():
    """Fixed-step method without step_size steps on the output grid, backwards too."""
    field = MLPField()
    y0, t, w = problem(torch.linspace(0, 1, 41).tolist())
    adj = gradients(field, y0, t, w, gradient="backsolve", method="rk4")
    direct = gradients(field, y0, t, w, gradient="direct", method="rk4")
    errs = compare(adj, direct)
    assert max(errs.values()) <= 1e-8, errs
    assert adj["stats"]["nfe_backward"] == 4 * 40


def test_backsolve_tuple_state_matches_direct():
    tol = 1e-9
    field = TupleField()
    torch.manual_seed(5)
    y0 = (torch.randn(3, 2, dtype=F64), torch.randn(3, 2, dtype=F64))
    t = torch.tensor([0.0, 0.4, 1.1, 1.5], dtype=F64)
    w = (torch.randn(4, 3, 2, dtype=F64), torch.randn(4, 3, 2, dtype=F64))
    adj = gradients(field, y0, t, w, gradient="backsolve", method="dopri5", tol=tol)
    semi = gradients(field, y0, t, w, gradient="backsolve", method="dopri5", tol=tol,
                     adjoint_options={"norm": "seminorm"})
    direct = gradients(field, y0, t, w, gradient="direct", method="dopri5", tol=tol)
    assert {"y0[0]", "y0[1]"} <= set(adj)
    for got in (adj, semi):
        errs = compare(got, direct)
        for name, err in errs.items():
            assert err <= (1000 if name == "t" else 100) * tol, (name, errs)


def test_odeint_adjoint_entry_point_matches_torchdiffeq():
    """Drop-in check against the peer: same problem, same tolerances, gradients agree."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    tol = 1e-9
    field = MLPField()
    y0, t, w = problem(FORWARD_T)
    grads = []
    for fn in (odeint_adjoint, torchdiffeq.odeint_adjoint):
        y = y0.clone().requires_grad_(True)
        tt = t.clone().requires_grad_(True)
        ys = fn(field, y, tt, rtol=tol, atol=tol, method="dopri5")
        grads.append(torch.autograd.grad((ys * w).sum(), [y, tt, *field.parameters()]))
    for ours, theirs in zip(*grads):
        assert rel_err(ours, theirs) <= 10 * tol


# --------------------------------------------------------------------------- checkpoint vs direct

def _per_row_field() -> MLPField:
    """An MLP field whose rows live on very different time scales (per-sample steps differ)."""
    field = MLPField(seed=3)
    with torch.no_grad():
        field.net[2].weight.mul_(3.0)
    return field


@pytest.mark.parametrize("per_sample", [False, True], ids=["joint", "per_sample"])
@pytest.mark.parametrize("method,kw", [("rk4", {"step_size": 0.05}), ("dopri5", {}),
                                       ("bosh3", {})], ids=["rk4", "dopri5", "bosh3"])
@pytest.mark.parametrize("t_values", [FORWARD_T, REVERSE_T], ids=["forward", "reverse"])
def test_checkpoint_equals_direct(per_sample, method, kw, t_values):
    field = _per_row_field()
    y0, t, w = problem(t_values, B=5)
    y0 = y0 * torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0], dtype=F64).reshape(-1, 1)
    ck = gradients(field, y0, t, w, gradient="checkpoint", method=method, tol=1e-7,
                   per_sample=per_sample, **kw)
    direct = gradients(field, y0, t, w, gradient="direct", method=method, tol=1e-7,
                       per_sample=per_sample, **kw)
    errs = compare(ck, direct)
    assert max(errs.values()) <= 1e-10, errs
    for key in ("nfe", "n_steps", "n_accepted"):
        assert torch.equal(torch.as_tensor(ck["stats"][key]), torch.as_tensor(direct["stats"][key]))
    if per_sample and method != "rk4":
        assert ck["stats"]["n_steps"].unique().numel() > 1  # rows really stepped differently


# --------------------------------------------------------------------------- gradcheck

def _small_problem():
    torch.manual_seed(7)
    y0 = torch.randn(2, 2, dtype=F64, requires_grad=True)
    W = (0.8 * torch.randn(2, 2, dtype=F64)).requires_grad_(True)
    # spans are not multiples of the step (0.74/0.03, 0.31/0.03, 0.43/0.03), so perturbing t
    # never changes the number of steps
    t = torch.tensor([0.0, 0.31, 0.74], dtype=F64, requires_grad=True)
    return y0, W, t


@pytest.mark.parametrize("gradient", ["direct", "checkpoint", "backsolve"])
def test_gradcheck_fixed_step(gradient):
    y0, W, t = _small_problem()

    def run(y0, W, t):
        def f(tt, y):
            return torch.tanh(y @ W) * (1.0 + 0.5 * tt) - 0.3 * y
        kw = {"adjoint_params": (W,)} if gradient == "backsolve" else {}
        return solve_ode(f, y0, t, method="rk4", step_size=0.03, gradient=gradient, **kw).ys

    assert torch.autograd.gradcheck(run, (y0, W, t))


# --------------------------------------------------------------------------- seminorm

def test_seminorm_fewer_backward_nfe_same_gradients():
    tol = 1e-9
    field = MLPField(d=4, hidden=32, seed=2)
    y0, t, w = problem(FORWARD_T, B=8, d=4)
    default = gradients(field, y0, t, w, gradient="backsolve", method="dopri5", tol=tol)
    semi = gradients(field, y0, t, w, gradient="backsolve", method="dopri5", tol=tol,
                     adjoint_options={"norm": "seminorm"})
    ref = gradients(field, y0, t, w, gradient="direct", method="dopri5", tol=1e-12)
    assert semi["stats"]["nfe_backward"] < default["stats"]["nfe_backward"], \
        (semi["stats"]["nfe_backward"], default["stats"]["nfe_backward"])
    for got in (default, semi):
        errs = compare(got, ref)
        assert max(errs.values()) <= 10 * tol, errs


def test_seminorm_through_odeint_adjoint_and_nfe_bookkeeping():
    """Counts real calls of f: the forward solve makes stats['nfe'] calls, the backward pass
    nfe_backward calls of the augmented field plus one call per output time i > 0 for dL/dt_i;
    seminorm makes fewer backward calls through the torchdiffeq-style entry point too."""
    field = MLPField(d=4, hidden=32, seed=2)
    y0, t, w = problem(FORWARD_T, B=8, d=4)
    calls = {}
    for norm in ("default", "seminorm"):
        y = y0.clone().requires_grad_(True)
        tt = t.clone().requires_grad_(True)
        field.calls = 0
        sol = solve_ode(field, y, tt, rtol=1e-8, atol=1e-8, gradient="backsolve",
                        adjoint_options={"norm": norm})
        assert field.calls == int(sol.stats["nfe"])
        field.calls = 0
        (sol.ys * w).sum().backward()
        assert field.calls == sol.stats["nfe_backward"] + (len(t) - 1)

        y = y0.clone().requires_grad_(True)
        field.calls = 0
        ys = odeint_adjoint(field, y, t, rtol=1e-8, atol=1e-8,
                            adjoint_options={"norm": norm})
        (ys * w).sum().backward()
        calls[norm] = field.calls
    assert calls["seminorm"] < calls["default"], calls


# --------------------------------------------------------------------------- no parameters

def test_plain_function_gradients_match_analytic_solution():
    """dy/dt = -(1 + t) y has y(T) = y0 exp(-(T - t0) - (T² - t0²)/2); a plain function has no
    parameters and the gradients w.r.t. y0 and both times are still exact."""
    def f(t, y):
        return -(1.0 + t) * y

    y0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=F64, requires_grad=True)
    t = torch.tensor([0.2, 1.3], dtype=F64, requires_grad=True)
    ys = odeint_adjoint(f, y0, t, rtol=1e-10, atol=1e-10)
    ys[-1].sum().backward()
    t0, T = 0.2, 1.3
    growth = math.exp(-(T - t0) - (T ** 2 - t0 ** 2) / 2)
    yT = y0.detach() * growth
    assert torch.allclose(ys[-1].detach(), yT, rtol=1e-9, atol=0)
    assert torch.allclose(y0.grad, torch.full_like(y0, growth), rtol=1e-8, atol=0)
    dT = float((-(1 + T) * yT).sum())                  # dL/dT = Σ f(T, y(T))
    dt0 = float(((1 + t0) * yT).sum())                 # dL/dt0 = -Σ ∂y(T)/∂y0 f(t0, y0)
    assert t.grad[1].item() == pytest.approx(dT, rel=1e-8)
    assert t.grad[0].item() == pytest.approx(dt0, rel=1e-8)


def test_field_independent_of_state():
    """f(t, y) = cos(t): ∂f/∂y = 0 and there are no parameters; the adjoint must not fail
    (torchdiffeq handles this) and dL/dy0 = 1, dL/dT = cos(T)·B·d."""
    y0 = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64, requires_grad=True)
    ys = odeint_adjoint(lambda tt, y: torch.cos(tt) * torch.ones_like(y), y0, t,
                        rtol=1e-11, atol=1e-11)
    ys[-1].sum().backward()
    assert torch.allclose(ys[-1].detach(), torch.full((2, 3), math.sin(1.0), dtype=F64))
    assert torch.equal(y0.grad, torch.ones_like(y0))
    assert t.grad[1].item() == pytest.approx(6 * math.cos(1.0), rel=1e-9)
    assert t.grad[0].item() == pytest.approx(-6 * math.cos(0.0), rel=1e-9)
    # without dL/dt nothing in the augmented field depends on (y, t, params) at all
    y0.grad = None
    ys = odeint_adjoint(lambda tt, y: torch.cos(tt) * torch.ones_like(y), y0, t.detach())
    ys[-1].sum().backward()
    assert torch.equal(y0.grad, torch.ones_like(y0))


def test_closure_tensors_need_adjoint_params():
    """Tensors a plain function closes over get gradients only when listed in adjoint_params
    (torchdiffeq's semantics); listed, they match direct backprop."""
    torch.manual_seed(11)
    A = (0.5 * torch.randn(3, 3, dtype=F64)).requires_grad_(True)
    y0 = torch.randn(4, 3, dtype=F64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)

    def f(tt, y):
        return torch.tanh(y @ A)

    ys = odeint_adjoint(f, y0, t, rtol=1e-10, atol=1e-10)
    assert not ys.requires_grad  # nothing to differentiate: neither y0, t nor listed params
    g_adj, = torch.autograd.grad(
        odeint_adjoint(f, y0, t, rtol=1e-10, atol=1e-10, adjoint_params=(A,)).sum(), A)
    g_dir, = torch.autograd.grad(odeint(f, y0, t, rtol=1e-10, atol=1e-10).sum(), A)
    assert rel_err(g_adj, g_dir) <= 1e-8


def test_module_with_empty_adjoint_params():
    """adjoint_params=() on an nn.Module: no parameter gradients, y0 gradient still exact."""
    field = MLPField()
    y0, t, w = problem(FORWARD_T)
    y = y0.clone().requires_grad_(True)
    ys = odeint_adjoint(field, y, t, rtol=1e-9, atol=1e-9, adjoint_params=())
    (ys * w).sum().backward()
    assert all(p.grad is None for p in field.parameters())
    ref = gradients(field, y0, t, w, gradient="direct", method="dopri5", tol=1e-12)
    assert rel_err(y.grad, ref["y0[0]"]) <= 1e-8


def test_backsolve_without_output_time_gradient_skips_t_term():
    """When t does not require grad, the backward pass makes no extra f calls for dL/dt."""
    field = MLPField()
    y0, t, w = problem(FORWARD_T)
    y = y0.clone().requires_grad_(True)
    sol = solve_ode(field, y, t, method="rk4", step_size=0.1, gradient="backsolve")
    field.calls = 0
    (sol.ys * w).sum().backward()
    assert field.calls == sol.stats["nfe_backward"] == 4 * 10


# --------------------------------------------------------------------------- memory (structural)

class _SavedBytes:
    """Bytes of distinct storages autograd saves for backward (outside checkpoint regions)."""

    def __init__(self) -> None:
        self.storages: Dict[int, int] = {}

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda x: x)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)

    def _pack(self, x):
        s = x.untyped_storage()
        self.storages[s.data_ptr()] = s.nbytes()
        return x

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def _saved_bytes(gradient: str, method: str, n_steps: int, hidden: int = 128):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 4)).to(F64)
    y0 = torch.randn(16, 4, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    kw = {"adjoint_params": tuple(net.parameters())} if gradient == "backsolve" else {}
    with _SavedBytes() as saved:
        ys = solve_ode(lambda tt, y: net(y), y0, t, method=method, step_size=1.0 / n_steps,
                       gradient=gradient, **kw).ys
    assert ys.requires_grad
    return saved.total, y0.numel() * y0.element_size()


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_memory_per_step(method):
    """What autograd stores per step: O(graph) for direct, O(state) for checkpoint (the step
    inputs), nothing for backsolve (only t, the outputs and the parameters, whatever the
    number of steps). Measured with saved-tensor hooks, not timing."""
    per_step = {}
    for gradient in ("direct", "checkpoint", "backsolve"):
        small, state = _saved_bytes(gradient, method, 10)
        large, _ = _saved_bytes(gradient, method, 60)
        per_step[gradient] = (large - small) / 50
    hidden_bytes = 16 * 128 * 8  # one f evaluation keeps at least its (16, 128) activation
    assert per_step["backsolve"] == 0, per_step
    assert per_step["direct"] >= hidden_bytes, per_step
    assert per_step["checkpoint"] <= 3 * state, (per_step, state)


# --------------------------------------------------------------------------- errors

def test_adjoint_params_with_non_tensor():
    field = MLPField()
    y0, t, _ = problem(FORWARD_T)
    with pytest.raises(InvalidInputError, match=r"adjoint_params.*tensors only.*item 1 is float"):
        odeint_adjoint(field, y0, t, adjoint_params=(field.net[0].weight, 3.0))


def test_func_output_shape_mismatch():
    y0, t, _ = problem(FORWARD_T)
    with pytest.raises(FunctionOutputError, match=r"returned shape \(4, 2\).*\(4, 3\)"):
        odeint_adjoint(lambda tt, y: y[:, :2], y0.requires_grad_(True), t)
    # tuple state: the message names the user's structure, not the internal flat state
    with pytest.raises(FunctionOutputError, match=r"same structure as y \(2 tensors.*got Tensor"):
        odeint_adjoint(lambda tt, s: s[0], (y0, y0.clone()), t)
    with pytest.raises(FunctionOutputError,
                       match=r"\[\(4, 3\), \(4, 3\)\]\); got \[\(4, 3\), \(4, 1\)\]"):
        odeint_adjoint(lambda tt, s: (s[0], s[1][:, :1]), (y0, y0.clone()), t)


def test_unknown_adjoint_option_lists_valid_ones():
    y0, t, _ = problem(FORWARD_T)
    with pytest.raises(InvalidInputError,
                       match=r"unknown `adjoint_options` \['tolerance'\]; valid options are "
                             r"\[.*'norm'.*'rtol'.*\]"):
        odeint_adjoint(MLPField(), y0, t, adjoint_options={"tolerance": 1e-3})
    with pytest.raises(InvalidInputError, match=r"norm.*'default', 'seminorm' or a callable"):
        solve_ode(MLPField(), y0, t, gradient="backsolve", adjoint_options={"norm": "l2"})


@pytest.mark.parametrize("t_values", [FORWARD_T, REVERSE_T], ids=["forward", "reverse"])
def test_per_sample_backsolve_matches_direct(t_values):
    """Rows integrate their adjoints with their own steps; the per-row parameter adjoints
    (per-sample VJPs) are summed at the end and kept out of per-row error control."""
    y0, t, w = problem(t_values, B=5)
    y0 = y0 * torch.linspace(0.2, 3.0, 5, dtype=F64).reshape(-1, 1)  # rows of unequal difficulty
    field = MLPField()

    def grads(tol, **kw):
        y = y0.clone().requires_grad_(True)
        tt = t.clone().requires_grad_(True)
        field.zero_grad()
        sol = solve_ode(field, y, tt, rtol=tol, atol=tol, per_sample=True, **kw)
        (sol.ys * w).sum().backward()
        return [y.grad, tt.grad] + [p.grad.clone() for p in field.parameters()], sol.stats

    # reference: direct backprop at a much tighter tolerance (direct backprop through
    # detached step control is itself less accurate than the adjoint at equal tolerance)
    reference, _ = grads(1e-13)
    back, stats = grads(1e-10, gradient="backsolve")
    for r, b in zip(reference, back):
        assert torch.allclose(r, b, rtol=0, atol=100 * 1e-10), (r - b).abs().max()
    nfe = stats["nfe_backward"]
    assert nfe.shape == (5,) and bool((nfe > 0).all())


def test_per_sample_backsolve_bad_input():
    y0, t, _ = problem(FORWARD_T)
    with pytest.raises(InvalidInputError, match=r"per_sample=True.*tensor `y0`"):
        solve_ode(TupleField(), (y0, y0.clone()), t, per_sample=True, gradient="backsolve")
    weight = torch.ones(3, dtype=F64, requires_grad=True)
    with pytest.raises(InvalidInputError, match=r"per_sample=True.*nn.Module"):
        solve_ode(lambda t, y: -weight * y, y0, t, per_sample=True, gradient="backsolve",
                  adjoint_params=(weight,))


def test_bad_gradient_mode_and_misplaced_adjoint_arguments():
    y0, t, _ = problem(FORWARD_T)
    with pytest.raises(InvalidInputError,
                       match=r"`gradient` must be one of \['direct', 'checkpoint', 'backsolve'\]; "
                             r"got 'nonsense'"):
        solve_ode(MLPField(), y0, t, gradient="nonsense")
    with pytest.raises(InvalidInputError, match=r"apply to gradient='backsolve' only"):
        solve_ode(MLPField(), y0, t, gradient="direct", adjoint_options={"norm": "seminorm"})
    with pytest.raises(InvalidInputError, match=r"odeint_adjoint always uses"):
        odeint_adjoint(MLPField(), y0, t, options={"gradient": "direct"})
    with pytest.raises(InvalidInputError, match=r"dense=True"):
        solve_ode(MLPField(), y0, t, gradient="backsolve", dense=True)


# --------------------------------------------------------------------------- gradient modes

def _mode_grads(gradient, **kw):
    field = MLPField()
    y0, t, w = problem(FORWARD_T)
    y0 = y0.clone().requires_grad_(True)
    sol = solve_ode(field, y0, t, rtol=1e-8, atol=1e-10, gradient=gradient, **kw)
    grads = torch.autograd.grad((sol.ys * w).sum(), [y0, *field.parameters()])
    return grads, sol.stats


@pytest.mark.parametrize("name,mode,options", [
    ("direct", DirectAdjoint(), None),
    ("checkpoint", CheckpointAdjoint(), None),
    ("backsolve", BacksolveAdjoint(), None),
    ("backsolve", BacksolveAdjoint(norm="seminorm", rtol=1e-9, atol=1e-11, method="tsit5"),
     {"norm": "seminorm", "rtol": 1e-9, "atol": 1e-11, "method": "tsit5"}),
])
def test_gradient_mode_objects_are_the_string_modes(name, mode, options):
    """``gradient=<mode object>`` gives exactly the gradients and counts of the string
    mode with the same adjoint options."""
    by_name, stats_name = _mode_grads(name, adjoint_options=options)
    by_mode, stats_mode = _mode_grads(mode)
    assert all(torch.equal(a, b) for a, b in zip(by_name, by_mode))
    assert {k: int(v) for k, v in stats_name.items()} == \
        {k: int(v) for k, v in stats_mode.items()}


def test_backsolve_adjoint_validates_and_takes_options():
    with pytest.raises(InvalidInputError, match="adjoint_rtol"):
        BacksolveAdjoint(rtol=-1.0)
    with pytest.raises(InvalidInputError, match="adjoint_method"):
        solve_ode(MLPField(), *problem(FORWARD_T)[:2],
                  gradient=BacksolveAdjoint(method="nonsense"))
    with pytest.raises(InvalidInputError, match="'norm'"):
        BacksolveAdjoint(norm="l1")
    mode = BacksolveAdjoint(norm="seminorm").with_options({"rtol": 1e-6})
    assert (mode.norm, mode.rtol, mode.atol) == ("seminorm", 1e-6, None)
    with pytest.raises(InvalidInputError, match="`gradient` must be one of"):
        solve_ode(MLPField(), *problem(FORWARD_T)[:2], gradient=BacksolveAdjoint)
