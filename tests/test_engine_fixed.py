"""The fixed-grid loop (`engine.fixed`): its finiteness poll and the exact step it reports."""
import math

import pytest
import torch

from solvers import NonFiniteError, sdeint, solve_ode
from solvers.engine.fixed import all_finite


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64,
                                   torch.complex64])
@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -math.inf])
def test_all_finite_matches_isfinite(dtype, bad):
    y = torch.linspace(-3, 3, 37).to(dtype).reshape(37, 1)
    if bad is not None:
        y[11, 0] = bad
    assert all_finite(y) == bool(torch.isfinite(y).all())


@pytest.mark.parametrize("dtype, big", [(torch.float16, 6e4), (torch.float32, 3e38),
                                        (torch.float64, 1.7e308)])
def test_all_finite_when_the_sum_overflows(dtype, big):
    """Finite entries whose sum overflows: the sum alone would say non-finite."""
    y = torch.full((4, 3), big, dtype=dtype)
    assert not math.isfinite(float(y.sum())) and all_finite(y)
    y[2, 1] = -math.inf
    assert not all_finite(y)


def test_all_finite_reads_a_graph_tensor_without_recording():
    y = torch.ones(3, requires_grad=True) * 2
    assert all_finite(y) and y.grad_fn is not None


def test_all_finite_of_an_empty_state():
    assert all_finite(torch.empty(0, 4))


@pytest.mark.parametrize("method, n_fail", [("euler", 8), ("rk4", 8)])
def test_fixed_step_failure_names_the_exact_step(method, n_fail):
    """f is NaN from t > 0.75 on: with h = 0.1 the step from t = 0.7 (step 8) evaluates it
    (euler at t = 0.7 itself is still finite, so its first NaN step starts at 0.8)."""
    def f(t, y):
        return torch.where(t > 0.75, torch.full_like(y, math.nan), -y)

    n_fail = n_fail + (method == "euler")
    with pytest.raises(NonFiniteError, match=rf"\(step {n_fail} of 20\)") as ei:
        solve_ode(f, torch.ones(1, 2, dtype=torch.float64), torch.tensor([0.0, 2.0]),
                  method=method, step_size=0.1)
    assert float(ei.value.t) == pytest.approx(0.1 * n_fail)


class _Blowup:
    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return torch.where(t > 0.5, torch.full_like(y, math.inf), -y)

    def g(self, t, y):
        return torch.zeros_like(y)


@pytest.mark.parametrize("poll_every", [1, 7])
def test_sde_failure_is_reported_at_the_poll(poll_every):
    """The poll after the first infinite state (t = 0.51, the step from t = 0.5 + dt) reports,
    at most poll_every steps later."""
    with pytest.raises(NonFiniteError) as ei:
        sdeint(_Blowup(), torch.ones(2, 1), torch.tensor([0.0, 1.0]), method="euler", dt=0.01,
               options={"poll_every": poll_every})
    t = float(ei.value.t)
    assert 0.52 - 1e-6 <= t <= 0.52 + 0.01 * (poll_every - 1) + 1e-6


def _time_dependent(t, y):
    """f with t inside a nonlinearity, so a stage time off by one ulp changes the result
    (``t`` is (B,) per sample)."""
    return torch.sin(3.7 * t.reshape(-1, 1) + y) - 0.3 * y


@pytest.mark.parametrize("method", ["midpoint", "heun", "rk4", "bosh3", "dopri5", "dopri8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_sample", [False, True])
def test_precomputed_stage_times_are_bit_identical(method, dtype, per_sample, monkeypatch):
    """The fixed grid's stage times formed in bulk (`RungeKutta.grid_control`) give exactly
    the states of forming ``t + c h`` in each step: the same elementwise op either way.
    Backward in time, 600 steps (more than one block of 256), dense outputs inside steps."""
    from solvers.ode.runge_kutta import RungeKutta
    y0 = torch.linspace(-1, 1, 6, dtype=dtype).reshape(3, 2)
    t = torch.tensor([1.3, 0.77, -0.02, -4.7], dtype=dtype)
    kw = dict(method=method, step_size=0.01, per_sample=per_sample)
    new = solve_ode(_time_dependent, y0, t, **kw).ys
    monkeypatch.setattr(RungeKutta, "grid_control", lambda self, times, hs: None)
    old = solve_ode(_time_dependent, y0, t, **kw).ys
    assert torch.equal(new, old)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_precomputed_stage_times_on_per_row_output_grids(method, monkeypatch):
    """Per-row output times (T, B) with a fixed-step method step on each row's own times."""
    from solvers.ode.runge_kutta import RungeKutta
    y0 = torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(3, 2)
    t = torch.linspace(0, 2, 300, dtype=torch.float64).unsqueeze(1) * torch.tensor(
        [1.0, 0.7, 1.3], dtype=torch.float64) - 0.4
    new = solve_ode(_time_dependent, y0, t, method=method, per_sample=True).ys
    monkeypatch.setattr(RungeKutta, "grid_control", lambda self, times, hs: None)
    old = solve_ode(_time_dependent, y0, t, method=method, per_sample=True).ys
    assert torch.equal(new, old)


def _ops_per_step(fn, steps):
    """Dispatched aten ops per step of ``fn()`` (no grad), setup included."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Count():
        fn()
    return Count.n / steps


def test_rk4_fixed_grid_op_count():
    """rk4 on a 1000-step grid, f = y Aᵀ (2 ops a call): per step 8 ops of f, 3 stage points
    and the final combination (1 mul, 3 adds, 1 addcmul), one sum and one host read of the
    poll = 18; the stage times come in blocks (a few ops per 256 steps) and setup adds
    under 0.1 per step. Any op added to the step shows up here."""
    A = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]])
    y0, t = torch.tensor([[1.0, 0.0]]), torch.tensor([0.0, 10.0])
    per_step = _ops_per_step(lambda: solve_ode(lambda t, y: y @ A.T, y0, t, method="rk4",
                                               step_size=0.01), 1000)
    assert 18.0 <= per_step < 18.1
