"""Property tests (hypothesis, float64) of the ODE solvers."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers import solve_ode

DT = torch.float64
ADAPTIVE = ["bosh3", "dopri5", "tsit5", "dopri8"]
PROFILE = settings(max_examples=25, deadline=None, derandomize=True)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def stable_matrix(d, c, skew_scale, seed):
    """A = -c I + skew + small random: real parts of eigenvalues <= -c + 0.1 d < 0."""
    g = _gen(seed)
    M = torch.randn(d, d, generator=g, dtype=DT)
    R = torch.rand(d, d, generator=g, dtype=DT) * 2 - 1
    return -c * torch.eye(d, dtype=DT) + skew_scale * (M - M.T) + 0.1 * R


def solver_norm(r, per_sample):
    if per_sample:
        return float(r.reshape(r.shape[0], r.shape[1], -1).square().mean(-1).sqrt().max())
    return float(r.reshape(r.shape[0], -1).square().mean(-1).sqrt().max())


# --------------------------------------------------------------------------- y' = A y

@PROFILE
@given(d=st.integers(1, 4), B=st.integers(1, 3), c=st.floats(0.5, 2.0),
       skew=st.floats(0.0, 1.5), T=st.floats(0.5, 3.0), n_out=st.integers(2, 12),
       method=st.sampled_from(ADAPTIVE), per_sample=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_linear_stable_matches_matrix_exp(d, B, c, skew, T, n_out, method, per_sample, seed):
    A = stable_matrix(d, c, skew, seed)
    y0 = torch.randn(B, d, generator=_gen(seed + 1), dtype=DT)
    ts = torch.linspace(0, T, n_out, dtype=DT)
    tol = 1e-7 if method == "bosh3" else 1e-9
    sol = solve_ode(lambda t, y: y @ A.T, y0, ts, method=method, rtol=tol, atol=tol,
                    per_sample=per_sample)
    exact = torch.stack([y0 @ torch.linalg.matrix_exp(A * t).T for t in ts])
    r = (sol.ys - exact) / (tol + tol * exact.abs())
    # global error within 10x tol in the controller's norm (20x for bosh3, whose global
    # error measured on fixed problems is ~10x tol: see test_ode_adaptive)
    assert solver_norm(r, per_sample) <= (20.0 if method == "bosh3" else 10.0)


@PROFILE
@given(d=st.integers(1, 4), k=st.integers(-20, 20), method=st.sampled_from(ADAPTIVE),
       per_sample=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_linear_scale_invariance_with_pure_rtol(d, k, method, per_sample, seed):
    """With atol = 0 step control is invariant to scaling y0 by 2^k, and f is linear, so
    the whole solve scales exactly (bit for bit): no hidden absolute thresholds."""
    A = stable_matrix(d, 1.0, 1.0, seed)
    y0 = torch.randn(2, d, generator=_gen(seed + 1), dtype=DT)
    ts = torch.tensor([0.0, 0.7, 2.0], dtype=DT)
    kw = dict(method=method, rtol=1e-6, atol=0.0, per_sample=per_sample)
    a = solve_ode(lambda t, y: y @ A.T, y0, ts, **kw)
    b = solve_ode(lambda t, y: y @ A.T, y0 * 2.0 ** k, ts, **kw)
    assert torch.equal(b.ys, a.ys * 2.0 ** k)
    assert torch.equal(a.stats["nfe"], b.stats["nfe"])


@PROFILE
@given(d=st.integers(2, 4), T=st.floats(0.5, 4.0), method=st.sampled_from(["dopri5", "dopri8"]),
       seed=st.integers(0, 2 ** 16))
def test_forward_then_backward_returns(d, T, method, seed):
    """A pure rotation (skew A): integrating to T and back recovers y0."""
    g = _gen(seed)
    M = torch.randn(d, d, generator=g, dtype=DT)
    A = M - M.T
    y0 = torch.randn(1, d, generator=g, dtype=DT)
    tol = 1e-10
    fwd = solve_ode(lambda t, y: y @ A.T, y0, torch.tensor([0.0, T], dtype=DT), method=method,
                    rtol=tol, atol=tol)
    back = solve_ode(lambda t, y: y @ A.T, fwd.ys[-1], torch.tensor([T, 0.0], dtype=DT),
                     method=method, rtol=tol, atol=tol)
    # norm preserved by the exact flow; both legs within ~10x tol each
    scale = tol * (1 + float(y0.abs().max()))
    assert float((back.ys[-1] - y0).abs().max()) <= 20 * scale * math.sqrt(d)
    assert abs(float(fwd.ys[-1].norm()) - float(y0.norm())) <= 20 * scale * math.sqrt(d)


# --------------------------------------------------------------------------- per sample

# A row solved in a batch of B and alone (or per-sample vs joint for B = 1) is the same
# arithmetic except that f's matmul runs on a (B, d) vs (1, d) operand, which another machine
# may give to another kernel (FMA or not, other blocking): each f value can differ by an ulp
# or two. The solve's sensitivity to that, measured by perturbing every f value by up to
# 2 ulps (2.2e-16 relative each) over 160 random examples of both tests below: <= 6.5e-13
# relative to 1 + max|y|, with identical step counts: the error estimate is a difference of
# stages, so ulp changes of f move it by ~u |f| h / tol ~ 1e-8 relative, and a flipped
# accept/reject needs an error ratio that close to the threshold (~1e-8 per step, a few
# hundred steps per solve). The bound is ~8x the measured one; a row coupled to the others
# (a shared step size, a joint norm) differs by ~tol = 1e-8 or in its NFE.
ROW_ROUNDOFF = 5e-12


def _mlp_like(W, b):
    def f(t, y):
        s = 1.0 + 0.5 * torch.sin(t)
        s = s.unsqueeze(-1) if s.dim() == 1 else s
        return torch.tanh(y @ W.T + b) * s - 0.1 * y
    return f


@PROFILE
@given(B=st.integers(2, 5), d=st.integers(1, 3), n_out=st.integers(2, 12),
       T=st.floats(0.5, 4.0), reverse=st.booleans(), method=st.sampled_from(ADAPTIVE),
       dense=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_per_sample_batch_equals_rows_alone(B, d, n_out, T, reverse, method, dense, seed):
    """Every row has its own steps, so a per-sample solve of a batch equals solving each
    row alone (same method, same tolerances) to round-off, with the same per-row NFE."""
    g = _gen(seed)
    W = torch.randn(d, d, generator=g, dtype=DT) * 1.5
    b = torch.randn(d, generator=g, dtype=DT)
    mags = 10.0 ** (torch.rand(B, 1, generator=g, dtype=DT) * 3 - 2)  # 1e-2 .. 1e1
    y0 = torch.randn(B, d, generator=g, dtype=DT) * mags
    ts = torch.linspace(0, T, n_out, dtype=DT)
    if reverse:
        ts = ts.flip(0)
    f = _mlp_like(W, b)
    tol = 1e-6 if method == "bosh3" else 1e-8
    kw = dict(method=method, rtol=tol, atol=tol, per_sample=True, dense=dense)
    batch = solve_ode(f, y0, ts, **kw)
    tq = ts[0] + (ts[-1] - ts[0]) * torch.tensor([0.11, 0.5, 0.93], dtype=DT)
    for i in range(B):
        alone = solve_ode(f, y0[i:i + 1], ts, **kw)
        diff = float((alone.ys[:, 0] - batch.ys[:, i]).abs().max())
        assert diff <= ROW_ROUNDOFF * (1 + float(alone.ys.abs().max())), (i, diff)
        for key in ("nfe", "n_steps", "n_accepted"):
            assert int(alone.stats[key][0]) == int(batch.stats[key][i]), (key, i)
        if dense:
            dd = float((alone.evaluate(tq)[:, 0] - batch.evaluate(tq)[:, i]).abs().max())
            assert dd <= ROW_ROUNDOFF * (1 + float(alone.ys.abs().max())), (i, dd)


@PROFILE
@given(d=st.integers(1, 4), method=st.sampled_from(ADAPTIVE), n_out=st.integers(2, 10),
       seed=st.integers(0, 2 ** 16))
def test_single_row_per_sample_equals_joint(d, method, n_out, seed):
    """For B = 1 the per-row norm is the batch norm: per-sample and joint mode take the
    same steps."""
    g = _gen(seed)
    W = torch.randn(d, d, generator=g, dtype=DT)
    b = torch.randn(d, generator=g, dtype=DT)
    y0 = torch.randn(1, d, generator=g, dtype=DT)
    ts = torch.linspace(0, 2, n_out, dtype=DT)
    f = _mlp_like(W, b)
    a = solve_ode(f, y0, ts, method=method, rtol=1e-7, atol=1e-7, per_sample=True)
    j = solve_ode(f, y0, ts, method=method, rtol=1e-7, atol=1e-7)
    # the two modes reach the same numbers through different code (t of shape (1,) vs (),
    # per-row vs whole-tensor norms): equal here, equal to an ulp or so per evaluation elsewhere
    diff = float((a.ys - j.ys).abs().max())
    assert diff <= ROW_ROUNDOFF * (1 + float(j.ys.abs().max())), diff
    assert int(a.stats["nfe"][0]) == int(j.stats["nfe"])


def test_per_sample_easy_and_hard_rows():
    """An easy (slow) and a hard (fast) row: per-row NFE differs, the hard row is active for
    every batched call, and the finished easy row stops advancing: from the call where its
    time reaches t_end on, f sees it at t_end with its final state."""
    om = torch.tensor([0.3, 8.0], dtype=DT)

    calls = []

    def f(t, y):
        calls.append((t.clone(), y.clone()))
        return torch.stack([om * y[:, 1], -om * y[:, 0]], -1)

    y0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=DT)
    ts = torch.tensor([0.0, 3.0], dtype=DT)
    sol = solve_ode(f, y0, ts, method="dopri5", rtol=1e-8, atol=1e-8, per_sample=True)
    nfe = sol.stats["nfe"]
    assert int(nfe[1]) > 3 * int(nfe[0])
    assert int(nfe[1]) == sol.stats["n_f_calls"] == len(calls)
    times = torch.stack([c[0] for c in calls])            # (calls, B)
    states = torch.stack([c[1] for c in calls])           # (calls, B, 2)
    # the easy row's last step: its last call before t_end, then dopri5's stages 6 and 7
    # (both at c = 1, the FSAL stage 7 with the final state)
    last_before = int((times[:, 0] < 3.0).nonzero().max())
    finished = last_before + 3
    assert finished < len(calls) - 100
    assert bool((times[last_before + 1:, 0] == 3.0).all())
    assert bool((states[finished - 1:, 0] == sol.ys[-1, 0]).all())
    assert float(times.max()) == 3.0
    # the easy row's NFE counts exactly the evaluations made while it was active
    assert int(nfe[0]) == finished
    exact = torch.stack([torch.cos(om * 3.0), -torch.sin(om * 3.0)], -1)
    assert torch.allclose(sol.ys[-1], exact, atol=1e-6)


# --------------------------------------------------------------------------- GPU

@pytest.mark.gpu
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("method", ["rk4", "dopri5", "tsit5", "dopri8"])
def test_cuda_matches_cpu(method, per_sample):
    g = _gen(0)
    W = torch.randn(3, 3, generator=g, dtype=DT)
    b = torch.randn(3, generator=g, dtype=DT)
    y0 = torch.randn(16, 3, generator=g, dtype=DT)
    ts = torch.linspace(0, 2, 7, dtype=DT)
    kw = dict(method=method, rtol=1e-9, atol=1e-9, per_sample=per_sample, dense=True)
    if method == "rk4":
        kw = dict(method=method, step_size=0.01, per_sample=per_sample, dense=True)
    cpu = solve_ode(_mlp_like(W, b), y0, ts, **kw)
    dev = torch.device("cuda")
    gpu = solve_ode(_mlp_like(W.to(dev), b.to(dev)), y0.to(dev), ts.to(dev), **kw)
    assert gpu.ys.device.type == "cuda"
    assert torch.allclose(gpu.ys.cpu(), cpu.ys, rtol=1e-9, atol=1e-10)
    tq = torch.tensor([0.3, 1.7], dtype=DT)
    assert torch.allclose(gpu.evaluate(tq.to(dev)).cpu(), cpu.evaluate(tq), rtol=1e-9,
                          atol=1e-10)
    # rk4: a fixed grid, so the counts are those of the grid by construction. Adaptive
    # methods: the step sequence is a function of error norms; CPU and GPU float64 kernels
    # (tanh, sin, matmul) differ by an ulp or so, which moves the error estimate (a difference
    # of stages) by ~u |f| h / tol ~ 1e-7 relative at tol 1e-9, so a flipped accept/reject
    # needs an error ratio that close to the threshold: ~1e-7 per step, a few hundred steps.
    # Both devices take the same steps (which the ys comparison above at 1e-9 presumes too:
    # another step sequence would differ by the solve error, ~10 tol).
    for key in ("nfe", "n_steps", "n_accepted", "n_rejected"):
        if key in cpu.stats:
            assert torch.equal(gpu.stats[key].cpu(), cpu.stats[key]), (key, method)
