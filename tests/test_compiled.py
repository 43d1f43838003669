"""The compiled path (`solvers.compiled`), fast checks: dynamo's ``eager`` / ``aot_eager``
backends with ``fullgraph=True`` trace every step exactly as inductor would (a graph break
is an error) without generating code, so these run in seconds; the inductor runs are in
test_compiled_inductor.py (slow).

Agreement with the eager solver: the traced graphs run the same ATen ops, so the results
agree to rounding; we allow what inductor's reassociation could cost (float64, n steps of
a contractive problem: ~n * ops-per-step * 1.1e-16 relative, < 1e-12 here). Counts (NFE,
steps, batched calls) must be equal.
"""
import math

import pytest
import torch

from solvers import (CompileOptions, InvalidInputError, NonFiniteError, odeint, sdeint,
                     solve_ode, solve_sde)
from solvers import compiled
from solvers.compiled.program import FixedProgram
from solvers.compiled.inductor import SplitAlphaAdds
from solvers.ode.rk import compile_tableau
from solvers.ode.runge_kutta import RungeKutta
from solvers.ode.tableaus import TABLEAUS
from solvers.sde.solver import SDESolver

F64 = torch.float64
A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=F64)
RTOL = 1e-12


class Counting:
    """A dynamo backend that counts the graphs it is handed (compilations) and runs them
    as traced."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def field(t, y):
    """A damped rotation with a time-dependent forcing (t is 0-dim, or (B,) per sample)."""
    return y @ A.T.to(y.dtype) + torch.sin(t).reshape(-1, 1)


def _close(a, b, rtol=RTOL):
    scale = b.abs().max()
    assert float((a - b).abs().max()) <= rtol * float(scale), float((a - b).abs().max())


def _same_stats(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])), (k, a[k], b[k])


EAGER = CompileOptions(backend="eager", unroll=3)


@pytest.mark.parametrize("kw", [
    dict(method="rk4", step_size=0.05, t=[0.0, 1.0]),                 # chunks + remainder
    dict(method="rk4", step_size=0.07, t=[0.0, 0.3, 0.45, 1.0]),       # outputs off the grid
    dict(method="midpoint", t=[0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0]),    # steps on the outputs
    dict(method="bosh3", step_size=0.1, t=[0.0, 1.0]),                 # FSAL on a fixed grid
    dict(method="rk4", step_size=0.05, t=[0.0, 1.0], per_sample=True),
    dict(method="rk4", step_size=0.1, t=[1.0, 0.0]),                   # backwards
])
def test_fixed_grid_equals_eager(kw):
    kw = dict(kw)
    t = torch.tensor(kw.pop("t"), dtype=F64)
    y0 = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    eager = solve_ode(field, y0, t, **kw)
    comp = solve_ode(field, y0, t, compile=EAGER, **kw)
    _close(comp.ys, eager.ys)
    _same_stats(comp.stats, eager.stats)


@pytest.mark.parametrize("kw", [
    dict(method="dopri5", t=[0.0, 3.0]),
    dict(method="dopri5", t=torch.linspace(0, 3, 12).tolist()),        # dense outputs
    dict(method="tsit5", t=torch.linspace(0, 3, 5).tolist(), per_sample=True),
    dict(method="dopri8", t=[0.0, 1.0, 3.0], rtol=1e-9, atol=1e-11),   # DOP853's error pair
    dict(method="bosh3", t=[0.0, 2.0], poll_every=4),
])
def test_adaptive_equals_eager(kw):
    kw = dict(kw)
    t = torch.tensor(kw.pop("t"), dtype=F64)
    y0 = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    eager = solve_ode(field, y0, t, **kw)
    comp = solve_ode(field, y0, t, compile=EAGER, **kw)
    _close(comp.ys, eager.ys)
    _same_stats(comp.stats, eager.stats)


def test_tuple_state_and_odeint_option():
    def f(t, y):
        a, b = y
        return b, -a
    y0 = (torch.ones(2, dtype=F64), torch.zeros(2, dtype=F64))
    t = torch.linspace(0, 1, 4, dtype=F64)
    eager = odeint(f, y0, t, method="rk4", options=dict(step_size=0.1))
    comp = odeint(f, y0, t, method="rk4", options=dict(step_size=0.1, compile=EAGER))
    for a, b in zip(comp, eager):
        _close(a, b)
    # rk4 on y'' = -y: local error <= h^5/120 per step, 10 steps: <= 8.3e-7 (1.6e-6 rel.)
    _close(comp[0][-1], torch.cos(torch.ones(2, dtype=F64)), 2e-6)


def test_one_compilation_per_program_and_none_on_reuse():
    """fullgraph=True: a graph break would raise. The chunk and the single step (the
    remainder and the dense step share it) compile once per carried-state structure (rk4
    carries a first stage after init or a dense step, none otherwise): at most 4 graphs;
    a second solve of the same problem (new y0) compiles nothing."""
    counting = Counting()
    opts = CompileOptions(backend=counting, unroll=4)
    t = torch.tensor([0.0, 0.33, 1.0], dtype=F64)
    y0 = torch.ones(2, 2, dtype=F64)

    def f(t, y):
        return -y * (1 + t)
    solve_ode(f, y0, t, method="rk4", step_size=0.1, compile=opts)
    first = counting.graphs
    assert 2 <= first <= 4
    solve_ode(f, 2 * y0, t, method="rk4", step_size=0.1, compile=opts)
    assert counting.graphs == first


def test_programs_compile_per_problem_past_dynamos_recompile_limit():
    """Twelve problems (more than dynamo's limit of 8 per code object) all compile: each
    program has its own code object."""
    counting = Counting()
    opts = CompileOptions(backend=counting, unroll=2)
    compiled.clear_cache()
    for k in range(12):
        def f(t, y, k=k):
            return -(k + 1) * y
        sol = solve_ode(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 0.2], dtype=F64),
                        method="euler", step_size=0.1, compile=opts)
        assert float(sol.ys[-1]) == pytest.approx((1 - 0.1 * (k + 1)) ** 2, rel=1e-14)
    assert counting.graphs == 12  # one chunk of 2 steps each, no single steps


@pytest.mark.parametrize("name", ["rk4", "dopri5", "tsit5", "dopri8", "heun"])
def test_rk_step_has_no_graph_break(name):
    """One RK step of each kind (FSAL, error pair, fixed) traced with fullgraph=True."""
    ct = compile_tableau(TABLEAUS[name], F64, torch.device("cpu"))
    rk = RungeKutta(ct)
    step = torch.compile(lambda t, h, y, k: rk.step(field, t, h, y, k), fullgraph=True,
                         backend="eager")
    t, h, y = torch.tensor(0.2, dtype=F64), torch.tensor(0.1, dtype=F64), torch.ones(3, 2,
                                                                                     dtype=F64)
    k0 = field(t, y)
    got, want = step(t, h, y, k0), rk.step(field, t, h, y, k0)
    _close(got.y1, want.y1)


def _sde(noise_type="diagonal", sde_type="ito"):
    class S(torch.nn.Module):
        def f(self, t, y):
            return -0.5 * y + torch.cos(t)

        def g(self, t, y):
            if noise_type == "additive":
                return torch.full((y.shape[0], y.shape[1], 2), 0.3, dtype=y.dtype)
            return 0.3 + 0.1 * torch.sin(y)
    s = S()
    s.noise_type, s.sde_type = noise_type, sde_type
    return s


@pytest.mark.parametrize("method, noise, sde_type, options", [
    ("euler", "diagonal", "ito", {}),
    ("milstein", "diagonal", "ito", {"grad_free": True}),
    ("srk", "additive", "ito", {}),
    ("reversible_heun", "diagonal", "stratonovich", {}),
])
def test_sde_equals_eager_with_the_same_increments(method, noise, sde_type, options):
    sde = _sde(noise, sde_type)
    y0 = torch.randn(8, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    ts = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
    opts = dict(seed=5, **options)
    eager = solve_sde(sde, y0, ts, method=method, dt=0.05, options=opts)
    comp = compiled.solve_sde(sde, y0, ts, method=method, dt=0.05, options=opts,
                              compile=EAGER)
    # the grid's last-bit step differences are shared (one float per step size): a change
    # of ~1e-17 per step on top of the reassociation bound
    _close(comp.ys, eager.ys)
    _same_stats(comp.stats, eager.stats)


def test_sde_step_has_no_graph_break_and_counts_in_tensors():
    sde = _sde()
    y0 = torch.ones(4, 3, dtype=F64)
    solver = SDESolver(sde, y0, [0.0, 1.0], method="srk", dt=0.1)
    import copy
    terms = copy.copy(solver.terms)
    terms.nfe_f = torch.zeros((), dtype=torch.long)
    terms.nfe_g = torch.zeros((), dtype=torch.long)
    prog = FixedProgram(solver.stepper, terms, CompileOptions(backend="eager", unroll=2), None)
    dw = torch.full_like(y0, 0.1)
    ys, _ = prog.chunk(torch.tensor([0.0, 0.1], dtype=F64), [0.1, 0.1], y0, (),
                       [(dw, 0.2 * dw), (-dw, 0.1 * dw)])
    want = y0
    for k, (w, h) in enumerate([(dw, 0.2 * dw), (-dw, 0.1 * dw)]):
        want = solver.stepper.step(solver.terms, torch.tensor(0.1 * k, dtype=F64), 0.1, want,
                                   (), (w, h)).y1
    _close(ys[-1], want)
    # SRI2 on diagonal noise: 3 drift and 4 diffusion evaluations per step
    assert (int(terms.nfe_f), int(terms.nfe_g)) == (6, 8)


def test_sdeint_compiled_uses_the_seeded_increments():
    sde = _sde()
    y0 = torch.zeros(16, 3, dtype=F64)
    ts = torch.tensor([0.0, 1.0], dtype=F64)
    a = compiled.sdeint(sde, y0, ts, method="euler", dt=0.1, options=dict(seed=1),
                        compile=EAGER)
    b = sdeint(sde, y0, ts, method="euler", dt=0.1, options=dict(seed=1))
    c = compiled.sdeint(sde, y0, ts, method="euler", dt=0.1, options=dict(seed=2),
                        compile=EAGER)
    _close(a, b)
    assert float((a - c).abs().max()) > 0.1  # another seed, another path


def test_gradients_through_compiled_steps_equal_eager():
    """aot_eager runs AOTAutograd: the backward of the compiled chunks."""
    w = torch.tensor([0.7, -0.3], dtype=F64, requires_grad=True)

    def f(t, y):
        return -w * y
    y0 = torch.ones(2, 2, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    opts = CompileOptions(backend="aot_eager", unroll=4)
    ge = torch.autograd.grad(solve_ode(f, y0, t, method="rk4", step_size=0.1).ys[-1].sum(),
                             (w, y0))
    gc = torch.autograd.grad(solve_ode(f, y0, t, method="rk4", step_size=0.1,
                                       compile=opts).ys[-1].sum(), (w, y0))
    for a, b in zip(gc, ge):
        _close(a, b)
    # rk4 with h = 0.1 on exp(-w t): d/dy0 = e^{-w} to ~1e-7
    _close(gc[1][0], torch.exp(-w.detach()), 1e-6)


def test_non_finite_state_raises_with_the_outputs_so_far():
    def f(t, y):
        return torch.where(t > 0.45, torch.full_like(y, math.inf), -y)
    with pytest.raises(NonFiniteError, match="compiled") as ei:
        solve_ode(f, torch.ones(1, 2, dtype=F64), torch.tensor([0.0, 0.2, 1.0], dtype=F64),
                  method="rk4", step_size=0.1, compile=EAGER)
    ys = ei.value.ys
    assert torch.isfinite(ys[1]).all() and torch.isnan(ys[2]).all()


@pytest.mark.parametrize("kw, name", [
    (dict(gradient="backsolve"), "gradient"),
    (dict(gradient="checkpoint"), "gradient"),
    (dict(method="kvaerno5"), "method"),
    (dict(dense=True), "dense"),
    (dict(callback=lambda *a: None), "callback"),
    (dict(per_sample=True, compact=True), "compact"),
    (dict(compile=CompileOptions(cuda_graphs=True), step_size=0.1), "cuda_graphs"),
    (dict(compile="yes"), "compile"),
])
def test_unsupported_options_are_refused_by_name(kw, name):
    kw = dict(kw)
    kw.setdefault("compile", EAGER)
    with pytest.raises(InvalidInputError, match=name):
        solve_ode(field, torch.ones(2, 2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                  **kw)


@pytest.mark.parametrize("kw, name", [
    (dict(method="milstein"), "grad_free"),
    (dict(method="euler", adaptive=True), "adaptive"),
    (dict(method="euler", compile=CompileOptions(cuda_graphs=True)), "cuda_graphs"),
])
def test_unsupported_sde_options_are_refused_by_name(kw, name):
    kw = dict(kw)
    kw.setdefault("compile", EAGER)
    with pytest.raises(InvalidInputError, match=name):
        compiled.solve_sde(_sde(), torch.ones(2, 3, dtype=F64), [0.0, 1.0], dt=0.1, **kw)


def test_sde_grid_with_too_many_step_sizes_is_refused():
    ts = torch.tensor([0.0, 0.11, 0.25, 0.42, 0.61, 0.83, 1.0], dtype=F64)
    with pytest.raises(InvalidInputError, match="step size"):
        compiled.solve_sde(_sde(), torch.ones(2, 3, dtype=F64), ts, method="euler", dt=0.05,
                           compile=EAGER)


@pytest.mark.parametrize("kw", [dict(unroll=0), dict(mode="fast"), dict(fullgraph=1),
                                dict(backend=3)])
def test_compile_options_are_validated(kw):
    with pytest.raises(InvalidInputError, match=next(iter(kw))):
        CompileOptions(**kw)


def test_split_alpha_adds_keeps_the_values_and_drops_alpha():
    """The inductor pre-pass that shields add(x, y, alpha) from inductor's addmm fusion."""
    from torch.fx.experimental.proxy_tensor import make_fx
    w = torch.randn(4, 4, dtype=F64)

    def fn(k0, x):
        return torch.add(torch.add(k0, x @ w, alpha=1 / 3), x, alpha=-2.0) + k0
    k0, x = torch.randn(3, 4, dtype=F64), torch.randn(3, 4, dtype=F64)
    gm = make_fx(fn)(k0, x)
    SplitAlphaAdds()(gm.graph)
    gm.recompile()
    adds = [n for n in gm.graph.nodes if n.target is torch.ops.aten.add.Tensor]
    assert len(adds) == 3 and all(n.kwargs.get("alpha", 1) == 1 for n in adds)
    _close(gm(k0, x), fn(k0, x), 1e-15)
