"""Step-size controllers as objects: ConstantStepSize and StepTo drive the fixed grid of any
method (``step_size=`` is a ConstantStepSize), PIDController the adaptive loop."""
import math

import pytest
import torch

from solvers import ConstantStepSize, InvalidInputError, PIDController, StepTo, solve_ode

F64 = torch.float64
Y0 = torch.tensor([[1.0, -0.5], [0.3, 2.0]], dtype=F64)
T = torch.tensor([0.0, 0.35, 1.0], dtype=F64)


def field(t, y):
    return torch.stack([y[:, 1], -y[:, 0] - 0.1 * y[:, 1]], dim=1) + 0.2 * torch.cos(t)


def _same(a, b):
    assert torch.equal(a.ys, b.ys)
    assert a.stats.keys() == b.stats.keys()
    assert all(torch.equal(torch.as_tensor(a.stats[k]), torch.as_tensor(b.stats[k]))
               for k in a.stats)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_constant_step_size_is_step_size(method, per_sample):
    _same(solve_ode(field, Y0, T, method=method, per_sample=per_sample,
                    controller=ConstantStepSize(0.05)),
          solve_ode(field, Y0, T, method=method, per_sample=per_sample, step_size=0.05))


def test_step_to_output_times_is_the_default_fixed_grid():
    _same(solve_ode(field, Y0, T, method="rk4", controller=StepTo(T)),
          solve_ode(field, Y0, T, method="rk4"))


def test_step_to_a_finer_grid():
    """A uniform StepTo grid takes the steps of ConstantStepSize with the same spacing
    (grids equal to rounding), and the adaptive method under it takes no error control."""
    grid = torch.linspace(0.0, 1.0, 41, dtype=F64)
    to = solve_ode(field, Y0, T, method="dopri5", controller=StepTo(grid))
    const = solve_ode(field, Y0, T, method="dopri5", controller=ConstantStepSize(0.025))
    assert int(to.stats["n_steps"]) == 40 and int(to.stats["n_rejected"]) == 0
    assert torch.allclose(to.ys, const.ys, rtol=0, atol=1e-13)
    ref = solve_ode(field, Y0, T, rtol=1e-12, atol=1e-12, controller=PIDController())
    assert torch.allclose(to.ys, ref.ys, rtol=0, atol=1e-7)  # 5th order, h = 1/40


@pytest.mark.parametrize("make,match", [
    (lambda: StepTo(torch.tensor([0.0, 0.5, 0.9])), r"`StepTo.ts` must run from t\[0\]=0"),
    (lambda: StepTo(torch.tensor([1.0, 0.5, 0.0])), r"`StepTo.ts` must run from"),
    (lambda: StepTo(torch.tensor([0.0, 0.7, 0.5, 1.0])), r"`StepTo.ts` must be strictly"),
    (lambda: ConstantStepSize(0.0), r"ConstantStepSize: `dt`"),
])
def test_bad_fixed_controllers(make, match):
    with pytest.raises(InvalidInputError, match=match):
        solve_ode(field, Y0, T, method="rk4", controller=make())


@pytest.mark.parametrize("per_sample", [False, True])
def test_backsolve_steps_on_a_step_to_grid(per_sample):
    """y' = -y cos t, y = y0 exp(-sin t): the gradient of y(0.5) + y(1) w.r.t. y0 is
    exp(-sin 0.5) + exp(-sin 1). The backward solves step on the StepTo grid's points
    inside each output interval; rk4 on steps <= 0.15 has a global error ~ C h^4 ~ 3e-7
    here (measured for both modes), so both stay within 2e-6 of the exact gradient."""
    f = lambda t, y: -y * torch.cos(t).reshape(-1, 1)  # noqa: E731  (t: 0-dim or (B,))
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    grid = torch.linspace(0, 1, 11, dtype=torch.float64) ** 1.5   # off the output times
    exact = math.exp(-math.sin(0.5)) + math.exp(-math.sin(1.0))
    for gradient in ("direct", "backsolve"):
        y0 = torch.ones(3, 2, dtype=torch.float64, requires_grad=True)
        sol = solve_ode(f, y0, t, method="rk4", controller=StepTo(grid), gradient=gradient,
                        per_sample=per_sample)
        sol.ys[1:].sum().backward()
        assert (y0.grad - exact).abs().max() < 2e-6, gradient
    # the backward pass took the grid's steps: 4 stages per step, 11 steps in all
    assert int(torch.as_tensor(sol.stats["nfe_backward"]).max()) == 4 * 11


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constant_step_size_counts_whole_steps_in_the_times_precision(dtype):
    """A span of k steps up to the rounding of the times takes k steps (float32 0.1 is
    0.10000000149: one step of 0.1, not a step and a sliver); a span a little longer
    than k steps still takes k + 1."""
    for k in range(1, 60):
        t = torch.tensor([0.0, 0.1 * k], dtype=dtype)
        grid = ConstantStepSize(0.1).grid(t, 1.0)
        assert grid.shape[0] == k + 1, (k, grid)
        longer = torch.tensor([0.0, 0.1 * k * (1 + 1e-4)], dtype=dtype)
        assert ConstantStepSize(0.1).grid(longer, 1.0).shape[0] == k + 2
