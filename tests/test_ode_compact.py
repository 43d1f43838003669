"""Per-sample compaction: f on the active rows only, same results as the full batch."""
import pytest
import torch

from solvers import InvalidInputError, solve_ode

F64 = torch.float64


def _problem(B=24):
    g = torch.Generator().manual_seed(0)
    mu = 0.2 + 5.0 * torch.rand(B, generator=g, dtype=F64)
    y0 = torch.stack([2.0 + 0.1 * torch.randn(B, generator=g, dtype=F64),
                      torch.zeros(B, dtype=F64), mu], 1)

    def vdp(t, y):  # row-independent: each row carries its own mu as a constant coordinate
        x, v, m = y[:, 0], y[:, 1], y[:, 2]
        return torch.stack([v, m * (1 - x * x) * v - x, torch.zeros_like(m)], 1)
    return vdp, y0


@pytest.mark.parametrize("n_out", [2, 7])
def test_compact_matches_full_batch(n_out):
    vdp, y0 = _problem()
    t = torch.linspace(0, 6, n_out, dtype=F64)
    calls = []

    def counted(t, y):
        calls.append(y.shape[0])
        return vdp(t, y)
    full = solve_ode(vdp, y0, t, rtol=1e-7, atol=1e-7, per_sample=True)
    comp = solve_ode(counted, y0, t, rtol=1e-7, atol=1e-7, per_sample=True, compact=True)
    assert torch.allclose(comp.ys, full.ys, rtol=0, atol=1e-12)
    for key in ("nfe", "n_steps", "n_accepted", "n_rejected"):
        assert torch.equal(comp.stats[key], full.stats[key]), key
    assert min(calls) < y0.shape[0]  # f really saw a smaller batch once rows finished


def test_compact_gradients_match_full_batch():
    vdp, y0 = _problem(12)
    t = torch.linspace(0, 4, 5, dtype=F64)
    grads = []
    for compact in (False, True):
        y = y0.clone().requires_grad_(True)
        out = solve_ode(vdp, y, t, rtol=1e-8, atol=1e-8, per_sample=True, compact=compact)
        (out.ys ** 2).sum().backward()
        grads.append(y.grad)
    assert torch.allclose(grads[0], grads[1], rtol=0, atol=1e-10)


def test_compact_bad_combinations():
    vdp, y0 = _problem(4)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(InvalidInputError, match=r"`compact=True` needs per_sample=True"):
        solve_ode(vdp, y0, t, compact=True)
    with pytest.raises(InvalidInputError, match=r"`compact=True`.*dense=True"):
        solve_ode(vdp, y0, t, per_sample=True, dense=True, compact=True)
