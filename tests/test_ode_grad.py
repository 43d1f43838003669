"""Gradients through `odeint` / `solve_ode` by direct backpropagation (float64).

* Fixed step: ``torch.autograd.gradcheck`` (w.r.t. y0 and an nn.Module's parameters), and
  the exact discrete gradient of RK4 on a linear problem.
* Adaptive: backprop differentiates the discrete solution with the step sizes held fixed
  (controller quantities are detached). Central finite differences (eps = 1e-6) of the
  whole solve at rtol = atol = 1e-12 differ from it by at most
  ~(solve error)/eps + O(eps^2) ~ 1e-11 |L| / 1e-6 = 1e-5 |L|; we assert 2e-5 max(1, |L|).
"""
from __future__ import annotations

import torch
from torch.func import functional_call

from solvers import odeint, solve_ode

DT = torch.float64


def small_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(),
                               torch.nn.Linear(4, 2)).double()


# --------------------------------------------------------------------------- fixed step

def test_gradcheck_rk4_fixed_step_y0_and_module_parameters():
    net = small_net()
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in net.parameters())
    y0 = torch.randn(3, 2, dtype=DT, generator=torch.Generator().manual_seed(1),
                     requires_grad=True)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=DT)

    def run(y0, *ps):
        pd = dict(zip(names, ps))
        return odeint(lambda t, y: functional_call(net, pd, (y,)), y0, ts, method="rk4",
                      options={"step_size": 0.1})

    assert torch.autograd.gradcheck(run, (y0, *params), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_gradcheck_fixed_step_interior_output_and_tuple_state():
    """Interior outputs come from the Hermite interpolant (extra stage): differentiable too;
    tuple states and decreasing time."""
    w = torch.tensor([0.7, -1.3], dtype=DT, requires_grad=True)
    x0 = torch.tensor([0.5, 1.0], dtype=DT, requires_grad=True)
    v0 = torch.tensor([0.0, -0.2], dtype=DT, requires_grad=True)
    ts = torch.tensor([1.0, 0.77, 0.31, 0.0], dtype=DT)

    def run(w, x0, v0):
        def f(t, s):
            x, v = s
            return v, -w * x - 0.1 * v * torch.cos(t)
        xs, vs = odeint(f, (x0, v0), ts, method="midpoint", options={"step_size": 0.1})
        return xs, vs

    assert torch.autograd.gradcheck(run, (w, x0, v0), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_rk4_gradient_equals_discrete_adjoint():
    """For y' = A y one classical RK4 step is y <- P(hA) y with P the degree-4 Taylor
    polynomial, so d(w . y_N)/dy0 = (P(hA)^N)^T w exactly."""
    A = torch.tensor([[-0.3, 1.2], [-1.0, -0.2]], dtype=DT)
    y0 = torch.tensor([1.0, -0.5], dtype=DT, requires_grad=True)
    w = torch.tensor([0.3, 2.0], dtype=DT)
    h, n = 0.1, 20
    ys = odeint(lambda t, y: A @ y, y0, torch.tensor([0.0, h * n], dtype=DT), method="rk4",
                options={"step_size": h})
    (g,) = torch.autograd.grad(w @ ys[-1], y0)
    Z = h * A
    P = torch.eye(2, dtype=DT) + Z + Z @ Z / 2 + Z @ Z @ Z / 6 + Z @ Z @ Z @ Z / 24
    expected = torch.linalg.matrix_power(P, n).T @ w
    assert torch.allclose(g, expected, rtol=1e-13, atol=1e-14)


# --------------------------------------------------------------------------- adaptive

def _vdp(mu):
    def f(t, y):
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, mu * (1 - x ** 2) * v - x], -1)
    return f


def _central_fd(fn, x, eps=1e-6):
    out = torch.zeros_like(x)
    with torch.no_grad():
        for i in range(x.numel()):
            e = torch.zeros_like(x).reshape(-1)
            e[i] = eps
            e = e.reshape(x.shape)
            out.reshape(-1)[i] = (fn(x + e) - fn(x - e)) / (2 * eps)
    return out


def test_dopri5_gradient_matches_finite_differences():
    tol = 1e-12
    ts = torch.tensor([0.0, 1.0, 3.0], dtype=DT)
    mu = torch.tensor(1.0, dtype=DT, requires_grad=True)
    y0 = torch.tensor([2.0, 0.0], dtype=DT, requires_grad=True)

    def loss(mu, y0):
        ys = odeint(_vdp(mu), y0, ts, method="dopri5", rtol=tol, atol=tol)
        return (ys ** 2).sum() + 3.0 * ys[1, 0]

    L = loss(mu, y0)
    g_mu, g_y0 = torch.autograd.grad(L, (mu, y0))
    fd_mu = _central_fd(lambda m: loss(m, y0.detach()), mu.detach())
    fd_y0 = _central_fd(lambda y: loss(mu.detach(), y), y0.detach())
    bound = 2e-5 * max(1.0, float(L.detach().abs()))
    assert abs(float(g_mu - fd_mu)) <= bound, (float(g_mu), float(fd_mu))
    assert float((g_y0 - fd_y0).abs().max()) <= bound, (g_y0, fd_y0)
    assert float(g_mu.abs()) > 0.1  # a real, non-trivial gradient


def test_dopri5_per_sample_gradient_matches_finite_differences():
    """Per-sample mode with per-row parameters mu_b: row b's loss depends on mu_b only."""
    tol = 1e-12
    mu = torch.tensor([0.5, 1.0, 2.0], dtype=DT, requires_grad=True)
    y0 = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.5, -1.0]], dtype=DT)
    ts = torch.tensor([0.0, 2.0], dtype=DT)

    def loss(mu):
        ys = odeint(_vdp(mu), y0, ts, rtol=tol, atol=tol, options={"per_sample": True})
        return (ys[-1] * torch.tensor([1.0, -0.5], dtype=DT)).sum()

    L = loss(mu)
    (g,) = torch.autograd.grad(L, mu)
    fd = _central_fd(loss, mu.detach())
    assert float((g - fd).abs().max()) <= 2e-5 * max(1.0, float(L.detach().abs())), (g, fd)


def test_adaptive_gradient_of_linear_system_vs_exact():
    """y' = A y: the exact gradient of L = Σ_k w . y(t_k) w.r.t. y0 and A (autograd through
    matrix_exp) vs backprop through dopri5/tsit5/dopri8 at tol 1e-10: the discrete
    solution's gradient differs from the exact one by O(tol)."""
    A0 = torch.tensor([[-0.5, 2.0, 0.0], [-2.0, -0.5, 0.5], [0.0, -0.5, -1.0]], dtype=DT)
    y00 = torch.tensor([1.0, 0.5, -0.3], dtype=DT)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
    ts = torch.tensor([0.0, 0.7, 2.0, 4.0], dtype=DT)

    A = A0.clone().requires_grad_()
    y0 = y00.clone().requires_grad_()
    L_exact = sum(w @ (torch.linalg.matrix_exp(A * t) @ y0) for t in ts)
    gA_exact, gy_exact = torch.autograd.grad(L_exact, (A, y0))
    for method in ("dopri5", "tsit5", "dopri8"):
        A = A0.clone().requires_grad_()
        y0 = y00.clone().requires_grad_()
        ys = odeint(lambda t, y: A @ y, y0, ts, method=method, rtol=1e-10, atol=1e-10)
        L = (ys @ w).sum()
        gA, gy = torch.autograd.grad(L, (A, y0))
        assert torch.allclose(gy, gy_exact, rtol=0, atol=1e-8), (method, gy, gy_exact)
        assert torch.allclose(gA, gA_exact, rtol=0, atol=1e-8), (method, gA, gA_exact)


def test_gradient_through_dense_evaluate():
    tol = 1e-12
    mu = torch.tensor(0.8, dtype=DT, requires_grad=True)
    y0 = torch.tensor([2.0, 0.0], dtype=DT)
    tq = torch.tensor([0.37, 1.91], dtype=DT)

    def loss(mu):
        sol = solve_ode(_vdp(mu), y0, torch.tensor([0.0, 2.0], dtype=DT), rtol=tol, atol=tol,
                        dense=True)
        return sol.evaluate(tq).sum()

    L = loss(mu)
    (g,) = torch.autograd.grad(L, mu)
    fd = _central_fd(loss, mu.detach())
    assert abs(float(g - fd)) <= 2e-5 * max(1.0, float(L.detach().abs())), (float(g), float(fd))


def test_gradient_through_module_field_adaptive():
    """An nn.Module vector field: gradients w.r.t. its parameters vs central FD."""
    net = small_net(3)
    y0 = torch.tensor([[0.5, -1.0], [1.0, 0.2]], dtype=DT)
    ts = torch.tensor([0.0, 1.5], dtype=DT)
    tol = 1e-12
    W = net[0].weight

    ys = odeint(lambda t, y: net(y), y0, ts, rtol=tol, atol=tol)
    L = ys[-1].square().sum()
    (g,) = torch.autograd.grad(L, W)

    def loss_of(Wv):
        with torch.no_grad():
            old = W.detach().clone()
            W.copy_(Wv)
            out = odeint(lambda t, y: net(y), y0, ts, rtol=tol, atol=tol)[-1].square().sum()
            W.copy_(old)
        return out

    fd = _central_fd(loss_of, W.detach().clone())
    assert float((g - fd).abs().max()) <= 2e-5 * max(1.0, float(L.detach().abs())), (g, fd)
