"""Brownian motion objects: moments, independence, additivity, reproducibility, Lévy area."""
import math

import pytest
import torch

from solvers import BrownianInterval, GridIncrements
from solvers.brownian.tree import _levy_split
from solvers.errors import InvalidInputError

F64 = torch.float64
N = 40_000


def z_ok(est, expected, std, k=5.0):
    return abs(est - expected) <= k * std


@pytest.mark.parametrize("levy", ["none", "space-time"])
def test_disjoint_increments_are_independent_gaussians(levy):
    bm = BrownianInterval(0.0, 2.0, (N,), dtype=F64, entropy=7, levy_area_approximation=levy)
    intervals = [(0.1, 0.3), (0.3, 0.35), (0.5, 1.37), (1.37, 2.0)]
    ws = [bm(a, b) for a, b in intervals]
    for (a, b), w in zip(intervals, ws):
        v = b - a
        assert z_ok(w.mean().item(), 0.0, math.sqrt(v / N))
        assert z_ok(w.var().item(), v, v * math.sqrt(2 / N))
        assert z_ok((w ** 4).mean().item() / v ** 2, 3.0, math.sqrt(96 / N))   # Gaussian kurtosis
    for i in range(len(ws)):
        for j in range(i + 1, len(ws)):
            corr = torch.corrcoef(torch.stack([ws[i], ws[j]]))[0, 1].item()
            assert abs(corr) < 5 / math.sqrt(N)


def test_space_time_levy_area_moments():
    bm = BrownianInterval(0.0, 1.0, (N,), dtype=F64, entropy=8,
                          levy_area_approximation="space-time")
    for a, b in [(0.0, 1.0), (0.2, 0.7), (0.123, 0.1234 + 0.2)]:
        w, u = bm(a, b, return_U=True)
        h = u / (b - a) - 0.5 * w
        assert z_ok(h.var().item(), (b - a) / 12, (b - a) / 12 * math.sqrt(2 / N))
        assert abs(torch.corrcoef(torch.stack([w, h]))[0, 1].item()) < 5 / math.sqrt(N)
    # H over disjoint halves is independent; U aggregates as U_ac = U_ab + U_bc + (c-b) W_ab.
    w1, u1 = bm(0.2, 0.45, return_U=True)
    w2, u2 = bm(0.45, 0.7, return_U=True)
    w, u = bm(0.2, 0.7, return_U=True)
    assert torch.allclose(u, u1 + u2 + 0.25 * w1, atol=1e-12)
    assert torch.allclose(w, w1 + w2, atol=1e-12)


def test_levy_split_reproduces_parent_law():
    """The conditional law used for splitting: unconditional (W, H) of the parent has
    covariance diag(h, h/12) and the conditional covariance is positive."""
    for left, right in [(0.5, 0.5), (0.1, 0.9), (0.73, 0.02)]:
        (m00, m01, m10, m11), (l00, l10, l11) = _levy_split(left, right)
        h = left + right
        # Var(W_left) = m00² h + m01² h/12 + l00² must equal left.
        assert math.isclose(m00 ** 2 * h + m01 ** 2 * h / 12 + l00 ** 2, left, rel_tol=1e-12)
        assert math.isclose(m10 ** 2 * h + m11 ** 2 * h / 12 + l10 ** 2 + l11 ** 2, left / 12,
                            rel_tol=1e-12)
        assert math.isclose(m00 * m10 * h + m01 * m11 * h / 12 + l00 * l10, 0.0, abs_tol=1e-12)
        assert l00 > 0 and l11 > 0


def test_additivity_float64():
    bm = BrownianInterval(-1.0, 3.0, (64, 5), dtype=F64, entropy=11,
                          levy_area_approximation="space-time")
    pts = sorted(torch.rand(40, generator=torch.Generator().manual_seed(0)).mul(4).sub(1).tolist())
    for a, b, c in zip(pts, pts[1:], pts[2:]):
        assert (bm(a, c) - (bm(a, b) + bm(b, c))).abs().max().item() <= 1e-12
    total = sum(bm(a, b) for a, b in zip(pts, pts[1:]))
    assert (total - bm(pts[0], pts[-1])).abs().max().item() <= 1e-12


def test_query_order_independence_and_reproducibility():
    queries = [(0.0, 0.5), (0.31, 0.32), (0.9, 1.0), (0.123456, 0.654321), (0.5, 0.75),
               (0.001, 0.002), (0.7, 0.71)]
    kw = dict(dtype=F64, entropy=42, levy_area_approximation="space-time", tol=1e-6)
    a = BrownianInterval(0.0, 1.0, (16, 3), **kw)
    b = BrownianInterval(0.0, 1.0, (16, 3), **kw)
    ra = {q: a(*q, return_U=True) for q in queries}
    rb = {q: b(*q, return_U=True) for q in reversed(queries)}
    for q in queries:
        for x, y in zip(ra[q], rb[q]):
            assert (x - y).abs().max().item() <= 1e-12   # exact up to float64 rounding
    other = BrownianInterval(0.0, 1.0, (16, 3), **{**kw, "entropy": 43})
    assert not torch.allclose(other(0.0, 0.5), ra[(0.0, 0.5)][0])


def test_reversed_query_and_point_form_and_dtype():
    bm = BrownianInterval(0.0, 1.0, (8,), dtype=torch.float32, entropy=3,
                          levy_area_approximation="space-time")
    w, h = bm.increment(0.2, 0.6, levy=True)
    wr, hr = bm.increment(0.6, 0.2, levy=True)
    assert w.dtype == torch.float32
    assert torch.equal(wr, -w) and torch.equal(hr, h)
    assert torch.allclose(bm(0.6), bm(0.0, 0.6))
    assert torch.equal(bm(0.4, 0.4), torch.zeros(8))
    # float32 and float64 trees with one seed share the path.
    bm64 = BrownianInterval(0.0, 1.0, (8,), dtype=F64, entropy=3,
                            levy_area_approximation="space-time")
    assert torch.allclose(bm64(0.2, 0.6).float(), w, atol=1e-6)


def test_brownian_interval_bad_input():
    with pytest.raises(InvalidInputError, match="t0"):
        BrownianInterval(1.0, 0.0, (3,))
    with pytest.raises(InvalidInputError, match="levy_area_approximation"):
        BrownianInterval(0.0, 1.0, (3,), levy_area_approximation="levy")
    bm = BrownianInterval(0.0, 1.0, (3,))
    with pytest.raises(InvalidInputError, match=r"\[t0, t1\]"):
        bm(0.5, 1.5)
    with pytest.raises(InvalidInputError, match="space-time"):
        bm(0.1, 0.2, return_U=True)


def test_grid_increments_moments_and_regeneration():
    steps = [0.01] * 50 + [-0.003] * 30
    gi = GridIncrements(steps, (N // 4,), F64, torch.device("cpu"), entropy=5, levy=True,
                        chunk_size=16)
    first = [gi.get(k) for k in range(len(steps))]
    again = GridIncrements(steps, (N // 4,), F64, torch.device("cpu"), entropy=5, levy=True,
                           chunk_size=16)
    for k in reversed(range(len(steps))):           # backward order regenerates the same values
        w, h = again.get(k)
        assert torch.equal(w, first[k][0]) and torch.equal(h, first[k][1])
    w = torch.stack([f[0] for f in first[:50]])
    n = w.numel()
    assert z_ok(w.var().item(), 0.01, 0.01 * math.sqrt(2 / n))
    wb = torch.stack([f[0] for f in first[50:]])
    assert z_ok(wb.var().item(), 0.003, 0.003 * math.sqrt(2 / wb.numel()))
    hs = torch.stack([f[1] for f in first[:50]])
    assert z_ok(hs.var().item(), 0.01 / 12, 0.01 / 12 * math.sqrt(2 / n))
    c = torch.corrcoef(torch.stack([w[:-1].reshape(-1), w[1:].reshape(-1)]))[0, 1].item()
    assert abs(c) < 5 / math.sqrt(n)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3), st.integers(0, 2 ** 40))
def test_additivity_and_order_independence_property(pts, seed):
    a, b, c = sorted(pts)
    kw = dict(dtype=F64, entropy=seed, levy_area_approximation="space-time")
    bm1 = BrownianInterval(0.0, 1.0, (4,), **kw)
    bm2 = BrownianInterval(0.0, 1.0, (4,), **kw)
    whole = bm1(a, c)
    parts = bm2(b, c) + bm2(a, b)                 # other object, other query order
    assert (whole - parts).abs().max().item() <= 1e-12


@pytest.mark.parametrize("approx", ["davie", "foster"])
def test_levy_area_approximation_moments(approx):
    # A = H⊗W - W⊗H + s (Z - Zᵀ): the residual's off-diagonal variance is 2 s², with
    # s² = h²/12 (Davie) or E[(h/10)(h/10 + H_0² + H_1²)] = (h/10)(h/10 + h/6) (Foster, as
    # Var H = h/12). N = 40000 samples: the variance estimate has relative sd sqrt(2/N) ~ 0.7%,
    # so 5% is ~7 sd.
    n, h = 40000, 0.5
    bm = BrownianInterval(0.0, 1.0, (n, 2), dtype=F64, entropy=11, levy_area_approximation=approx)
    w, u, a = bm(0.25, 0.75, return_U=True, return_A=True)
    hst = u / h - 0.5 * w
    resid = a - (hst.unsqueeze(-1) * w.unsqueeze(-2) - w.unsqueeze(-1) * hst.unsqueeze(-2))
    expect = 2 * (h * h / 12 if approx == "davie" else 0.1 * h * (0.1 * h + h / 6))
    assert abs(resid[:, 0, 1].var().item() / expect - 1) < 0.05
    assert torch.equal(a, -a.transpose(-1, -2)) and bool((a.diagonal(dim1=-2, dim2=-1) == 0).all())
    wr, ar = bm.increment_area(0.75, 0.25)               # reversed: both negated
    assert torch.equal(wr, -w) and torch.equal(ar, -a)


def test_tol_zero_and_given_w():
    w = torch.tensor([0.3, -1.2], dtype=F64)
    bm = BrownianInterval(0.0, 2.0, W=w, tol=0)
    assert bm.depth == 40 and bm.size == (2,) and bm.dtype == F64
    torch.testing.assert_close(bm(0.0, 2.0), w, rtol=0, atol=1e-15)
    torch.testing.assert_close(bm(0.0, 0.7) + bm(0.7, 2.0), w, rtol=0, atol=1e-14)
