"""Tuple states in joint and per-sample mode (regression: per-sample unflatten)."""
import pytest
import torch

from solvers import solve_ode


@pytest.mark.parametrize("per_sample", [False, True])
def test_tuple_state_shapes_values_and_dense_output(per_sample):
    torch.manual_seed(0)
    a = torch.randn(5, 2, dtype=torch.float64)
    b = torch.randn(5, 3, 1, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    sol = solve_ode(lambda t, y: (-y[0], -2 * y[1]), (a, b), t, per_sample=per_sample,
                    dense=True, rtol=1e-9, atol=1e-11)
    ya, yb = sol.ys
    assert ya.shape == (3, 5, 2) and yb.shape == (3, 5, 3, 1)
    decay = torch.exp(-t).reshape(3, 1, 1)
    assert torch.allclose(ya, a * decay, atol=1e-8)
    assert torch.allclose(yb, b * decay.unsqueeze(-1) ** 2, atol=1e-8)
    ea, eb = sol.evaluate(torch.tensor([0.25], dtype=torch.float64))
    assert eb.shape == (1, 5, 3, 1)
    assert torch.allclose(eb[0], b * torch.exp(torch.tensor(-0.5, dtype=torch.float64)),
                          atol=1e-7)


@pytest.mark.parametrize("adjoint", [False, True])
def test_tuple_state_with_zero_dim_parts(adjoint):
    """0-dim tuple parts (torchdiffeq's test problem): values and gradients of both parts."""
    from solvers import odeint, odeint_adjoint
    y0 = (torch.tensor(3.0, dtype=torch.float64, requires_grad=True),
          torch.tensor(2.0, dtype=torch.float64, requires_grad=True))
    t = torch.linspace(1, 8, 10, dtype=torch.float64)
    solve = odeint_adjoint if adjoint else odeint
    ya, yb = solve(lambda t, y: (-y[0], -2 * y[1]), y0, t, rtol=1e-10, atol=1e-12)
    assert ya.shape == (10,) and yb.shape == (10,)
    decay = torch.exp(-(t - 1))
    # global error ~ 100 rtol on O(1) values (the parts decay to 1e-6 of y0 at t=8)
    assert torch.allclose(ya, 3 * decay, rtol=0, atol=1e-8)
    assert torch.allclose(yb, 2 * decay ** 2, rtol=0, atol=1e-8)
    ga, gb = torch.autograd.grad((ya + yb).sum(), y0)
    assert torch.allclose(ga, decay.sum(), rtol=1e-7, atol=0)
    assert torch.allclose(gb, (decay ** 2).sum(), rtol=1e-7, atol=0)
