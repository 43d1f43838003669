"""The compiled path with inductor (generated C++ on the CPU, Triton on CUDA): results equal
the eager solver's within what reordering floating-point operations can cost, and counts
are equal. Each case compiles for seconds, so the file is `slow`; the CUDA cases are `gpu`
(skipped without a device; untested on hardware in this project's runs).

Tolerances: inductor may fuse and reassociate the ops of a step, each reordering changing a
result by ~1 ulp. float64 (eps 1.1e-16): over n <= 1000 steps of these stable problems the
difference stays below ~ n * 10 ops * eps ~ 1e-12 relative. float32 (eps 6e-8): 4 ulps per
step, times the step count.
"""
import pytest
import torch

from dynamics import VPSDE, GaussianMixture
from generative.samplers import sample
from solvers import CompileOptions, solve_ode, solve_sde
from solvers import compiled
from solvers.compiled.program import compile_fresh

pytestmark = pytest.mark.slow
F64 = torch.float64
A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=F64)


def linear(t, y):
    """A matmul field: the RK stage sums add f's mm outputs with alpha=."""
    return y @ A.T.to(y.dtype)


def forced(t, y):
    return y @ A.T.to(y.dtype) + torch.sin(t).reshape(-1, 1)


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def _same_stats(a, b):
    for k in a:
        assert torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])), (k, a[k], b[k])


def test_compiled_add_with_alpha_after_a_matmul_is_right():
    """Inductor's add(mm) -> addmm fusion drops alpha (torch 2.13); CompileOptions installs
    `SplitAlphaAdds` before it. ``k0 + (x @ W) / 3`` must come out, not ``k0 + x @ W``."""
    w = torch.randn(4, 4, dtype=F64)
    x, k0 = torch.randn(3, 4, dtype=F64), torch.randn(3, 4, dtype=F64)

    def fn(k0, x):
        return torch.add(k0, x @ w, alpha=1 / 3)
    got = compile_fresh(fn, CompileOptions())(k0, x)
    assert _rel(got, fn(k0, x)) <= 1e-15 * 4


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-12), (torch.float32, 4 * 100 * 6e-8)])
@pytest.mark.parametrize("f", [linear, forced])
def test_rk4_fixed_grid_inductor_equals_eager(dtype, tol, f):
    y0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(0)).to(dtype)
    t = torch.tensor([0.0, 0.37, 1.0], dtype=dtype)            # an output off the grid
    eager = solve_ode(f, y0, t, method="rk4", step_size=0.01)
    comp = solve_ode(f, y0, t, method="rk4", step_size=0.01, compile=True)
    assert _rel(comp.ys, eager.ys) <= tol
    _same_stats(comp.stats, eager.stats)


@pytest.mark.parametrize("method, kw", [("dopri5", {}), ("tsit5", dict(per_sample=True))])
def test_adaptive_inductor_equals_eager(method, kw):
    y0 = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0, 4, 9, dtype=F64)
    eager = solve_ode(forced, y0, t, method=method, **kw)
    comp = solve_ode(forced, y0, t, method=method, compile=True, **kw)
    assert _rel(comp.ys, eager.ys) <= 1e-12
    _same_stats(comp.stats, eager.stats)


def test_gradient_through_inductor_steps_equals_eager():
    w = torch.tensor([0.7, -0.3], dtype=F64, requires_grad=True)

    def f(t, y):
        return -w * y + torch.cos(t)
    y0 = torch.ones(2, 2, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    grads = [torch.autograd.grad(solve_ode(f, y0, t, method="rk4", step_size=0.05,
                                           compile=c).ys[-1].square().sum(), (w, y0))
             for c in (False, True)]
    for a, b in zip(grads[1], grads[0]):
        assert _rel(a, b) <= 1e-12


class _SDE(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return -0.5 * y + torch.cos(t)

    def g(self, t, y):
        return 0.3 + 0.1 * torch.sin(y)


@pytest.mark.parametrize("method", ["euler", "srk"])
def test_sde_inductor_equals_eager(method):
    y0 = torch.randn(16, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    eager = solve_sde(_SDE(), y0, ts, method=method, dt=0.01, options=dict(seed=4))
    comp = compiled.solve_sde(_SDE(), y0, ts, method=method, dt=0.01, options=dict(seed=4))
    assert _rel(comp.ys, eager.ys) <= 1e-12
    _same_stats(comp.stats, eager.stats)


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m"])
def test_sampler_inductor_equals_eager(name):
    gm = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [1.5, 1.0]],
                         [[[0.3, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.4]]])
    sde = VPSDE()
    score = gm.score_fn(sde)
    runs = [sample(name, sde, score, (64, 2), n_steps=10, dtype=F64, compile=c,
                   generator=torch.Generator().manual_seed(0)) for c in (False, True)]
    assert _rel(runs[1].x, runs[0].x) <= 1e-12 and runs[1].nfe == runs[0].nfe


@pytest.mark.gpu
def test_cuda_graph_replay_equals_eager():
    """CUDA graphs: chunks captured once and replayed (values only, under no_grad)."""
    dev = torch.device("cuda")
    y0 = torch.randn(64, 2, dtype=F64, device=dev)
    t = torch.tensor([0.0, 0.37, 1.0], dtype=F64, device=dev)

    def f(t, y):
        return y @ A.T.to(dev)
    with torch.no_grad():
        eager = solve_ode(f, y0, t, method="rk4", step_size=0.01)
        opts = CompileOptions(cuda_graphs=True)
        first = solve_ode(f, y0, t, method="rk4", step_size=0.01, compile=opts)
        again = solve_ode(f, 2 * y0, t, method="rk4", step_size=0.01, compile=opts)
    assert _rel(first.ys, eager.ys) <= 1e-12
    assert _rel(again.ys, 2 * eager.ys) <= 1e-12   # replayed with new inputs (f is linear)
    _same_stats(first.stats, eager.stats)


@pytest.mark.gpu
def test_compiled_on_cuda_equals_eager():
    dev = torch.device("cuda")
    y0 = torch.randn(64, 2, dtype=F64, device=dev)
    t = torch.linspace(0, 4, 9, dtype=F64, device=dev)

    def f(t, y):
        return y @ A.T.to(dev)
    eager = solve_ode(f, y0, t)
    comp = solve_ode(f, y0, t, compile=True)
    assert _rel(comp.ys, eager.ys) <= 1e-12
    _same_stats(comp.stats, eager.stats)
