"""Per-sample time grids: ``t`` of shape (T, B) with ``per_sample=True``, each row its own
output times (torchdiffeq #122 / #86 / #43), in every gradient mode; equal to row-by-row
solves, as far as the rows' own error control allows."""
import math

import pytest
import torch

from solvers import InvalidInputError, odeint, solve_ode

F64 = torch.float64
W = torch.tensor([1.0, 2.0, 0.5], dtype=F64)          # per-row frequencies


class Osc:
    """x'' = -w_r^2 x per row r (rows independent)."""

    def __init__(self, w):
        self.w = w.reshape(-1, 1)

    def __call__(self, t, y):
        return torch.cat([y[:, 1:], -(self.w ** 2) * y[:, :1]], dim=1)


osc = Osc(W)


def exact(t, y0):
    """y(t) for the oscillator of frequency W[r], per row, t of shape (T, B)."""
    w = W.reshape(1, -1)
    x = y0[:, 0] * torch.cos(w * t) + y0[:, 1] / w * torch.sin(w * t)
    v = -y0[:, 0] * w * torch.sin(w * t) + y0[:, 1] * torch.cos(w * t)
    return torch.stack([x, v], -1)


Y0 = torch.tensor([[1.0, 0.0], [0.5, 1.0], [0.0, 2.0]], dtype=F64)
T_ROWS = torch.stack([torch.linspace(0, 1, 6, dtype=F64), torch.linspace(0.5, 3, 6, dtype=F64),
                      torch.linspace(-1, 2, 6, dtype=F64) ** 3 / 4], dim=1)   # (6, 3)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "dopri8", "rk4"])
def test_each_row_its_own_times(method):
    sol = solve_ode(osc, Y0, T_ROWS, method=method, per_sample=True, rtol=1e-10, atol=1e-12)
    assert sol.ys.shape == (6, 3, 2)
    err = (sol.ys - exact(T_ROWS - T_ROWS[:1], Y0)).abs().amax(dim=(0, 2))      # per row
    if method == "rk4":
        # rk4 steps on each row's output times: its amplification factor differs from
        # exp(i w h) by ~(w h)^5 / 120 per step, times the orbit's size max(|x|, |v|);
        # 2x for the neglected higher terms (w h reaches 1 here)
        h = (T_ROWS[1:] - T_ROWS[:-1]).abs()
        size = (Y0[:, 0] ** 2 + (Y0[:, 1] / W) ** 2).sqrt() * torch.clamp(W, min=1.0)
        bound = 2 * size * ((W * h) ** 5 / 120).sum(0)
        assert bool((err <= bound).all()), (err, bound)
    else:
        assert float(err.max()) < 1e-8


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_rows_equal_row_by_row_solves(method):
    """Rows of a per-sample solve take the steps they would take alone (per-row error
    control, independent rows), so the outputs agree to round-off and the NFE exactly."""
    sol = solve_ode(osc, Y0, T_ROWS, method=method, per_sample=True, rtol=1e-8, atol=1e-10)
    for r in range(3):
        alone = solve_ode(Osc(W[r:r + 1]), Y0[r:r + 1], T_ROWS[:, r:r + 1], method=method,
                          per_sample=True, rtol=1e-8, atol=1e-10)
        assert torch.allclose(alone.ys[:, 0], sol.ys[:, r], rtol=0, atol=1e-13)
        assert int(alone.stats["nfe"][0]) == int(sol.stats["nfe"][r])


@pytest.mark.parametrize("gradient", ["direct", "checkpoint", "backsolve"])
def test_gradients_in_every_mode(gradient):
    """d/dy0 and d/dt of sum(y(t)) against the closed form, per row."""
    y0 = Y0.clone().requires_grad_(True)
    t = T_ROWS.clone().requires_grad_(True)
    sol = solve_ode(osc, y0, t, per_sample=True, rtol=1e-10, atol=1e-12, gradient=gradient)
    sol.ys[..., 0].sum().backward()
    y0r = Y0.clone().requires_grad_(True)
    tr = T_ROWS.clone().requires_grad_(True)
    exact(tr - tr[:1], y0r)[..., 0].sum().backward()
    assert torch.allclose(y0.grad, y0r.grad, rtol=0, atol=1e-7)
    assert torch.allclose(t.grad, tr.grad, rtol=0, atol=1e-6)


def test_dense_output_per_row():
    sol = solve_ode(osc, Y0, T_ROWS, per_sample=True, dense=True, rtol=1e-10, atol=1e-12)
    q = torch.tensor([0.6, 0.9], dtype=F64)     # inside every row's span
    got = sol.evaluate(q)                        # (2, B, 2)
    assert torch.allclose(got, exact(q.reshape(-1, 1) - T_ROWS[:1], Y0), atol=1e-7)


def test_odeint_takes_per_row_times():
    ys = odeint(osc, Y0, T_ROWS, rtol=1e-10, atol=1e-12, options={"per_sample": True})
    assert torch.allclose(ys, exact(T_ROWS - T_ROWS[:1], Y0), atol=1e-8)


@pytest.mark.parametrize("t,kw,match", [
    (T_ROWS[:, :2], {}, r"shape \(T, B\) with B=3"),
    (torch.stack([T_ROWS[:, 0], T_ROWS[:, 1].flip(0), T_ROWS[:, 2]], 1), {},
     r"one direction for all rows"),
    (torch.stack([T_ROWS[:, 0], torch.tensor([0., 1, 1, 2, 3, 4], dtype=F64),
                  T_ROWS[:, 2]], 1), {}, r"column 1 is"),
    (T_ROWS, {"step_size": 0.1}, r"per-row output times"),
    (T_ROWS.clone().fill_(math.nan), {}, r"must be finite"),
])
def test_bad_row_times(t, kw, match):
    with pytest.raises(InvalidInputError, match=match):
        solve_ode(osc, Y0, t, per_sample=True, **kw)


def test_compaction_with_row_times():
    """Finished rows leave the batch (each at its own end time): the same outputs and NFE
    (compaction needs f with position-independent rows: one frequency for all)."""
    same = Osc(torch.ones(1, dtype=F64))
    ends = torch.stack([T_ROWS[:, 0], T_ROWS[:, 1] * 3, T_ROWS[:, 2]], 1)   # rows end apart
    a = solve_ode(same, Y0, ends, per_sample=True, rtol=1e-8, atol=1e-10)
    b = solve_ode(same, Y0, ends, per_sample=True, rtol=1e-8, atol=1e-10, compact=True)
    assert torch.allclose(a.ys, b.ys, rtol=0, atol=1e-13)
    assert torch.equal(a.stats["nfe"], b.stats["nfe"])
    two = ends[[0, -1]]                 # only the end points: no output window
    c = solve_ode(same, Y0, two, per_sample=True, rtol=1e-8, atol=1e-10, compact=True)
    assert torch.allclose(c.ys[-1], a.ys[-1], rtol=0, atol=1e-6)
