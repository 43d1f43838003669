"""Stochastic adjoint: convergence to direct backprop on one path, exactness of the
reversible Heun adjoint, and argument checks."""
import pytest
import torch

from solvers import BrownianInterval, sdeint, sdeint_adjoint
from solvers.errors import InvalidInputError

F64 = torch.float64


class Net(torch.nn.Module):
    def __init__(self, noise_type="diagonal", sde_type="ito", d=2, m=3):
        super().__init__()
        self.noise_type, self.sde_type = noise_type, sde_type
        self.a = torch.nn.Parameter(torch.tensor([0.7, -0.4], dtype=F64))
        self.b = torch.nn.Parameter(torch.tensor([0.5, 0.3], dtype=F64))
        self.M = torch.nn.Parameter(torch.randn(d, m, generator=torch.Generator().manual_seed(0),
                                                dtype=F64) * 0.3)

    def f(self, t, y):
        return self.a * torch.sin(y) - 0.3 * y + 0.1 * t

    def g(self, t, y):
        if self.noise_type == "diagonal":
            return self.b * torch.cos(y) + 0.1
        if self.noise_type == "additive":
            return (self.M * (1 + t)).expand(y.shape[0], *self.M.shape)
        if self.noise_type == "scalar":
            return (self.b * torch.cos(y) + 0.1).unsqueeze(-1)
        return self.M + torch.tanh(y * self.b)[..., None] * self.M


def _grads(fn, sde, y0, ts, **kw):
    y0 = y0.clone().requires_grad_(True)
    ys = fn(sde, y0, ts, **kw)
    loss = (ys ** 2).sum() + ys[1].sin().sum()
    return torch.autograd.grad(loss, [y0] + list(sde.parameters()), allow_unused=True)


def _max_diff(g1, g2):
    """Largest entry difference; an unused parameter (None from autograd) counts as zero."""
    out = 0.0
    for a, b in zip(g1, g2):
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        out = max(out, (a - b).abs().max().item())
    return out


def _bm(noise_type, B, seed):
    size = {"diagonal": (B, 2), "scalar": (B, 1)}.get(noise_type, (B, 3))
    return BrownianInterval(0.0, 1.0, size, dtype=F64, entropy=seed)


@pytest.mark.parametrize("noise_type", ["diagonal", "additive", "general", "scalar"])
def test_reversible_heun_adjoint_is_exact(noise_type):
    sde = Net(noise_type, "stratonovich")
    y0 = torch.linspace(-1, 1, 8, dtype=F64).reshape(4, 2)
    ts = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
    for dt in [0.1, 0.01]:
        kw = dict(method="reversible_heun", dt=dt, options={"seed": 3})
        direct = _grads(sdeint, sde, y0, ts, **kw)
        adj = _grads(sdeint_adjoint, sde, y0, ts, **kw)
        assert _max_diff(direct, adj) < 1e-8


def _fit(dts, errs):
    x = torch.log(torch.tensor(dts))
    y = torch.log(torch.tensor(errs))
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


@pytest.mark.parametrize("noise_type,sde_type,method,order", [
    ("diagonal", "stratonovich", "midpoint", 1.0),
    ("diagonal", "ito", "milstein", 1.0),
    ("additive", "ito", "euler", 1.0),
])
def test_adjoint_converges_to_direct_backprop(noise_type, sde_type, method, order):
    """|adjoint - direct| on one shared path (per-sample gradients w.r.t. y0, averaged over
    paths) shrinks with the method's strong order."""
    sde = Net(noise_type, sde_type)
    B = 64
    bm = _bm(noise_type, B, seed=1)
    y0 = torch.linspace(-1, 1, 2 * B, dtype=F64).reshape(B, 2)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    dts = [2.0 ** -k for k in range(3, 8)]
    errs, perrs = [], []
    for dt in dts:
        direct = _grads(sdeint, sde, y0, ts, bm=bm, method=method, dt=dt)
        adj = _grads(sdeint_adjoint, sde, y0, ts, bm=bm, method=method, dt=dt)
        errs.append((direct[0] - adj[0]).abs().mean().item())
        perrs.append(max((a - b).abs().max().item() / (1 + a.abs().max().item())
                         for a, b in zip(direct[1:], adj[1:]) if a is not None))
    p = _fit(dts, errs)
    assert abs(p - order) <= 0.25, (p, errs)
    assert perrs[-1] < perrs[0] / 4, perrs         # parameter gradients converge too


def test_adjoint_after_adaptive_forward_replays_its_grid():
    sde = Net("diagonal", "ito")
    B = 16
    bm = BrownianInterval(0.0, 1.0, (B, 2), dtype=F64, entropy=2, tol=1e-7)
    y0 = torch.linspace(-1, 1, 2 * B, dtype=F64).reshape(B, 2)
    ts = torch.tensor([0.0, 1.0], dtype=F64)
    kw = dict(bm=bm, method="milstein", adaptive=True, rtol=1e-4, atol=1e-4, dt=0.05)
    direct = _grads(sdeint, sde, y0, ts, **kw)
    adj = _grads(sdeint_adjoint, sde, y0, ts, **kw)
    scale = 1 + max(g.abs().max().item() for g in direct if g is not None)
    assert _max_diff(direct, adj) / scale < 5e-3


def test_adjoint_fast_path_regenerates_the_noise():
    """Without a bm, the backward pass regenerates the forward increments chunk by chunk:
    on a fine grid the adjoint matches direct backprop through the same seeded path."""
    sde = Net("diagonal", "stratonovich")
    y0 = torch.linspace(-1, 1, 16, dtype=F64).reshape(8, 2)
    ts = torch.tensor([0.0, 1.0], dtype=F64)
    kw = dict(method="midpoint", dt=2e-3, options={"seed": 7, "chunk_size": 37})
    direct = _grads(sdeint, sde, y0, ts, **kw)
    adj = _grads(sdeint_adjoint, sde, y0, ts, **kw)
    assert _max_diff(direct, adj) < 5e-3
    other = _grads(sdeint_adjoint, sde, y0, ts, **{**kw, "options": {"seed": 8}})
    assert _max_diff(direct, other) > 10 * _max_diff(direct, adj)


def test_adjoint_params_and_bad_method():
    sde = Net("diagonal", "ito")
    y0 = torch.zeros(2, 2, dtype=F64, requires_grad=True)
    ys = sdeint_adjoint(sde, y0, [0.0, 0.1], dt=0.01, method="euler",
                        adjoint_params=[sde.a], options={"seed": 0})
    ga, gb = torch.autograd.grad(ys.sum(), [sde.a, sde.b], allow_unused=True)
    assert ga is not None and gb is None
    with pytest.raises(InvalidInputError, match="`adjoint_method`.*'midpoint', 'heun'.*'srk'"):
        sdeint_adjoint(sde, y0, [0.0, 0.1], adjoint_method="srk")
    with pytest.raises(InvalidInputError, match="`adjoint_method`"):
        sdeint_adjoint(sde, y0, [0.0, 0.1], adjoint_method="euler")   # diagonal: not additive


class _NoGraphDiagonal(torch.nn.Module):
    """Diagonal Itô SDE whose f and g depend on neither y nor a parameter (one unused)."""
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.tensor(1.0, dtype=F64))

    def f(self, t, y):
        return torch.zeros_like(y) + 0.1

    def g(self, t, y):
        return torch.sigmoid(torch.zeros_like(y)) + 0.1


class _ZeroDriftScalar(torch.nn.Module):
    """Scalar Stratonovich SDE with f = 0 (no graph) and a parameter in g."""
    noise_type, sde_type = "scalar", "stratonovich"

    def __init__(self):
        super().__init__()
        self.b = torch.nn.Parameter(torch.tensor(0.8, dtype=F64))

    def f(self, t, y):
        return torch.zeros_like(y)

    def g(self, t, y):
        return torch.sigmoid(self.b * y).unsqueeze(-1)


@pytest.mark.parametrize("sde,method", [(_NoGraphDiagonal, "milstein"),
                                        (_NoGraphDiagonal, "euler"),
                                        (_ZeroDriftScalar, "reversible_heun")])
def test_adjoint_of_fields_without_graph(sde, method):
    """f or g without an autograd graph: the backward pass treats them as constants (zero
    Jacobian), as torchsde does, and matches direct backprop through the same path."""
    sde = sde()
    y0 = torch.linspace(-1, 1, 6, dtype=F64).reshape(3, 2)
    ts = torch.tensor([0.0, 0.4, 1.0], dtype=F64)
    kw = dict(method=method, dt=0.01, options={"seed": 5})
    direct = _grads(sdeint, sde, y0, ts, **kw)
    adj = _grads(sdeint_adjoint, sde, y0, ts, **kw)
    tol = 1e-8 if method == "reversible_heun" else 1e-2  # exact adjoint / O(dt) adjoint
    assert _max_diff(direct, adj) < tol
    if isinstance(sde, _NoGraphDiagonal):
        assert adj[1] is not None and float(adj[1]) == 0.0


def test_solve_sde_gradient_modes():
    """``solve_sde(gradient=...)``: BacksolveAdjoint(method=) is sdeint_adjoint's
    adjoint_method, DirectAdjoint is sdeint, CheckpointAdjoint gives sdeint's gradients;
    other fields are refused."""
    from solvers import BacksolveAdjoint, CheckpointAdjoint, DirectAdjoint, solve_sde
    sde = Net("diagonal", "stratonovich")
    y0 = torch.linspace(-1, 1, 8, dtype=F64).reshape(4, 2)
    ts = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
    kw = dict(method="heun", dt=0.05, options={"seed": 2})

    def solve(**extra):
        return lambda sde, y, ts, **k: solve_sde(sde, y, ts, **k, **extra).ys
    pairs = [(solve(gradient=BacksolveAdjoint(method="heun")),
              lambda *a, **k: sdeint_adjoint(*a, adjoint_method="heun", **k)),
             (solve(gradient="backsolve"), sdeint_adjoint),
             (solve(gradient=DirectAdjoint()), sdeint)]
    for new, old in pairs:
        for a, b in zip(_grads(new, sde, y0, ts, **kw), _grads(old, sde, y0, ts, **kw)):
            assert (a is None and b is None) or torch.equal(a, b)
    with pytest.raises(InvalidInputError, match="takes `method` only; got \\['rtol'\\]"):
        solve_sde(sde, y0, ts, gradient=BacksolveAdjoint(rtol=1e-3), **kw)
    # checkpointing recomputes each step's graph: the same arithmetic, equal to rounding
    ckpt = _grads(solve(gradient=CheckpointAdjoint()), sde, y0, ts, **kw)
    for a, b in zip(ckpt, _grads(sdeint, sde, y0, ts, **kw)):
        assert (a is None and b is None) or torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    with pytest.raises(InvalidInputError, match="`adjoint_method` for method='heun'"):
        solve_sde(sde, y0, ts, gradient=BacksolveAdjoint(method="reversible_heun"), **kw)
