"""sdeint / solve_sde: agreement with torchsde, Itô–Stratonovich consistency, shapes,
reverse time, statistics, adaptive stepping and input errors."""
import math

import pytest
import torch

from solvers import BrownianInterval, SDESolution, sdeint, solve_sde
from solvers.errors import (FunctionOutputError, InvalidInputError, MaxStepsExceededError,
                            NonFiniteError, SolverError)

torchsde = pytest.importorskip("torchsde")
F64 = torch.float64


class Toy(torch.nn.Module):
    """Nonlinear, time-dependent SDE of every noise type (m = 3 for additive/general)."""

    def __init__(self, noise_type="diagonal", sde_type="ito", d=2, m=3):
        super().__init__()
        self.noise_type, self.sde_type = noise_type, sde_type
        gen = torch.Generator().manual_seed(0)
        self.A = torch.randn(d, m, generator=gen, dtype=F64) * 0.3

    def f(self, t, y):
        return torch.sin(y) * torch.cos(t) - 0.5 * y

    def g(self, t, y):
        nt = self.noise_type
        if nt == "diagonal":
            return 0.5 * torch.cos(y) + 0.1 * t
        if nt == "scalar":
            return (0.4 * torch.sin(y) + 0.2).unsqueeze(-1)
        if nt == "additive":
            return (self.A * (1 + t)).expand(y.shape[0], *self.A.shape)
        return self.A + 0.2 * torch.tanh(y)[..., None] * self.A    # general: (B, d, m)


def _bm_size(noise_type, B, d=2, m=3):
    return {"diagonal": (B, d), "scalar": (B, 1)}.get(noise_type, (B, m))


CASES = [
    ("ito", "diagonal", "euler"), ("ito", "diagonal", "milstein"), ("ito", "diagonal", "srk"),
    ("ito", "scalar", "euler"), ("ito", "scalar", "milstein"), ("ito", "scalar", "srk"),
    ("ito", "additive", "euler"), ("ito", "additive", "milstein"), ("ito", "additive", "srk"),
    ("ito", "general", "euler"),
    ("stratonovich", "diagonal", "heun"), ("stratonovich", "diagonal", "midpoint"),
    ("stratonovich", "diagonal", "milstein"), ("stratonovich", "diagonal", "reversible_heun"),
    ("stratonovich", "scalar", "heun"), ("stratonovich", "general", "midpoint"),
    ("stratonovich", "general", "reversible_heun"), ("stratonovich", "additive", "heun"),
]


@pytest.mark.parametrize("sde_type,noise_type,method", CASES,
                         ids=["-".join(c) for c in CASES])
def test_matches_torchsde_given_the_same_increments(sde_type, noise_type, method):
    sde = Toy(noise_type, sde_type)
    B = 5
    y0 = torch.linspace(-1, 1, 2 * B, dtype=F64).reshape(B, 2)
    ts = torch.linspace(0.0, 1.0, 5, dtype=F64)
    levy = "space-time" if method == "srk" else "none"
    bm = torchsde.BrownianInterval(0.0, 1.0, _bm_size(noise_type, B), dtype=F64, entropy=1,
                                   levy_area_approximation=levy)
    ref = torchsde.sdeint(sde, y0, ts, bm=bm, method=method, dt=2.0 ** -7)
    ours = sdeint(sde, y0, ts, bm=bm, method=method, dt=2.0 ** -7)
    assert ours.shape == (5, B, 2)
    assert (ours - ref).abs().max().item() < 1e-12


def test_milstein_grad_free_matches_torchsde():
    sde = Toy("diagonal", "ito")
    y0 = torch.full((4, 2), 0.3, dtype=F64)
    bm = torchsde.BrownianInterval(0.0, 1.0, (4, 2), dtype=F64, entropy=2)
    ts = torch.tensor([0.0, 1.0], dtype=F64)
    ref = torchsde.sdeint(sde, y0, ts, bm=bm, method="milstein", dt=2.0 ** -6,
                          options={"grad_free": True})
    ours = sdeint(sde, y0, ts, bm=bm, method="milstein", dt=2.0 ** -6, options={"grad_free": True})
    assert (ours - ref).abs().max().item() < 1e-12


class GBMStrat:
    noise_type, sde_type = "diagonal", "stratonovich"

    def f(self, t, y):
        return 0.3 * torch.sin(y)

    def g(self, t, y):
        return 0.6 * torch.cos(y) + 0.2


class GBMIto(GBMStrat):
    """The Itô form of GBMStrat: f + ½ g ∂g/∂y."""

    sde_type = "ito"

    def f(self, t, y):
        return super().f(t, y) + 0.5 * self.g(t, y) * (-0.6 * torch.sin(y))


def test_ito_stratonovich_consistency():
    B = 400
    bm = BrownianInterval(0.0, 1.0, (B, 1), dtype=F64, entropy=9)
    y0 = torch.full((B, 1), 0.4, dtype=F64)
    diffs = []
    for dt in [2.0 ** -5, 2.0 ** -7, 2.0 ** -9]:
        a = sdeint(GBMStrat(), y0, [0.0, 1.0], bm=bm, method="heun", dt=dt)[-1]
        b = sdeint(GBMIto(), y0, [0.0, 1.0], bm=bm, method="milstein", dt=dt)[-1]
        diffs.append((a - b).abs().mean().item())
    assert diffs[-1] < 2e-3
    assert diffs[0] / diffs[-1] > 8          # both strong order 1 on one path: ~16x over 4x dt
    # Solving the Stratonovich SDE as if it were Itô is visibly different.
    wrong = sdeint(GBMIto(), y0, [0.0, 1.0], bm=bm, method="milstein", dt=2.0 ** -9)[-1]
    fake = type("F", (GBMStrat,), {"sde_type": "ito"})()
    wrong2 = sdeint(fake, y0, [0.0, 1.0], bm=bm, method="milstein", dt=2.0 ** -9)[-1]
    assert (wrong - wrong2).abs().mean().item() > 50 * diffs[-1]


class Images:
    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return -y

    def g(self, t, y):
        return 0.1 * torch.ones_like(y) * (1 + t)


@pytest.mark.parametrize("method", ["euler", "milstein", "srk"])
def test_image_shaped_diagonal_state(method):
    y0 = torch.randn(3, 2, 4, 4)
    sol = solve_sde(Images(), y0, torch.tensor([0.0, 0.05, 0.1]), method=method, dt=0.01,
                    options={"seed": 0})
    assert isinstance(sol, SDESolution)
    assert sol.ys.shape == (3, 3, 2, 4, 4) and sol.ys.dtype == torch.float32
    assert torch.equal(sol.ys[0], y0)
    assert sol.stats["n_steps"] == 10 and sol.stats["n_rejected"] == 0


def test_stats_and_seed_reproducibility():
    sde = Toy("diagonal")
    y0 = torch.zeros(4, 2, dtype=F64)
    s1 = solve_sde(sde, y0, [0.0, 0.5], method="euler", dt=0.01, options={"seed": 3})
    s2 = solve_sde(sde, y0, [0.0, 0.5], method="euler", dt=0.01, options={"seed": 3})
    s3 = solve_sde(sde, y0, [0.0, 0.5], method="euler", dt=0.01, options={"seed": 4})
    assert torch.equal(s1.ys, s2.ys) and not torch.equal(s1.ys, s3.ys)
    assert s1.stats["n_steps"] == 50 and s1.stats["n_accepted"] == 50
    assert s1.stats["nfe_f"] == 51 and s1.stats["nfe_g"] == 51   # + one validation call
    srk = solve_sde(sde, y0, [0.0, 0.5], method="srk", dt=0.01, options={"seed": 3})
    assert srk.stats["nfe_f"] == 1 + 3 * 50 and srk.stats["nfe_g"] == 1 + 4 * 50
    # A chunk size that does not divide the step count still covers every step.
    s4 = solve_sde(sde, y0, [0.0, 0.5], method="euler", dt=0.01,
                   options={"seed": 3, "chunk_size": 7})
    s5 = solve_sde(sde, y0, [0.0, 0.5], method="euler", dt=0.01,
                   options={"seed": 3, "chunk_size": 7})
    assert torch.equal(s4.ys, s5.ys) and s4.stats["n_steps"] == 50


class Brownian:
    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return torch.zeros_like(y)

    def g(self, t, y):
        return torch.ones_like(y)


def test_decreasing_ts_integrates_backwards():
    bm = BrownianInterval(0.0, 1.0, (20_000, 1), dtype=F64, entropy=1)
    y0 = torch.zeros(20_000, 1, dtype=F64)
    ys = sdeint(Brownian(), y0, [1.0, 0.5, 0.0], bm=bm, method="euler", dt=0.01)
    assert torch.allclose(ys[-1], bm(1.0, 0.0), atol=1e-12)      # W(0) - W(1)
    assert abs(ys[-1].var().item() - 1.0) < 0.05
    # Drift runs backwards too: dy = y dt from t=1 to 0 gives y0 e^{-1}.
    ode = type("ODE", (), {"noise_type": "diagonal", "sde_type": "ito",
                           "f": lambda s, t, y: y, "g": lambda s, t, y: torch.zeros_like(y)})()
    out = sdeint(ode, torch.ones(2, 1, dtype=F64), torch.tensor([1.0, 0.0], dtype=F64),
                 method="srk", dt=1e-3, options={"seed": 0})
    assert abs(out[-1, 0, 0].item() - math.exp(-1)) < 1e-6
    # Reverse-time fixed grid with the fast sampler: increments of variance |dt|.
    big = sdeint(Brownian(), torch.zeros(20_000, 1), [1.0, 0.0], method="euler", dt=0.01,
                 options={"seed": 5})
    assert abs(big[-1].var().item() - 1.0) < 0.05


def test_single_output_time_returns_y0():
    y0 = torch.ones(2, 2)
    assert torch.equal(sdeint(Toy("diagonal"), y0.double(), [0.3])[0], y0.double())


class GBM:
    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return 0.5 * y

    def g(self, t, y):
        return 0.8 * y


@pytest.mark.parametrize("method,loose,tight", [("euler", 1e-1, 1e-3),
                                                ("milstein", 1e-2, 1e-4), ("srk", 1e-2, 1e-4)])
def test_adaptive_error_control(method, loose, tight):
    B = 200
    bm = BrownianInterval(0.0, 1.0, (B, 1), dtype=F64, entropy=2,
                          levy_area_approximation="space-time", tol=1e-7)
    y0 = torch.ones(B, 1, dtype=F64)
    exact = y0 * torch.exp(0.5 - 0.32 + 0.8 * bm(0.0, 1.0))
    res = []
    for rtol in [loose, tight]:
        sol = solve_sde(GBM(), y0, [0.0, 0.5, 1.0], bm=bm, method=method, adaptive=True,
                        rtol=rtol, atol=rtol, dt=0.1, dt_min=1e-6)
        res.append(((sol.ys[-1] - exact).abs().mean().item(), sol.stats))
    (e_loose, s_loose), (e_tight, s_tight) = res
    assert e_tight < e_loose / 3
    assert s_tight["n_accepted"] > s_loose["n_accepted"]
    assert s_tight["n_rejected"] > 0
    assert s_tight["n_steps"] == s_tight["n_accepted"] + s_tight["n_rejected"]


def test_adaptive_without_bm_and_max_steps():
    sol = solve_sde(GBM(), torch.ones(8, 1, dtype=F64), [0.0, 1.0], method="srk", adaptive=True,
                    rtol=1e-3, atol=1e-3, options={"seed": 1})
    assert torch.isfinite(sol.ys).all() and sol.stats["n_accepted"] > 1
    with pytest.raises(MaxStepsExceededError) as ei:
        solve_sde(GBM(), torch.ones(8, 1, dtype=F64), [0.0, 1.0], method="euler", adaptive=True,
                  rtol=1e-8, atol=1e-8, dt_min=1e-9, options={"seed": 1, "max_steps": 20})
    assert ei.value.ys.shape == (2, 8, 1) and ei.value.t is not None


class Explode:
    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return y ** 3

    def g(self, t, y):
        return torch.zeros_like(y)


def test_non_finite_raises_with_partial_solution():
    with pytest.raises(NonFiniteError) as ei:
        sdeint(Explode(), torch.full((2, 1), 3.0), torch.linspace(0, 1, 11), method="euler",
               dt=0.01, options={"poll_every": 5})
    err = ei.value
    assert isinstance(err, SolverError) and 0 < float(err.t) < 1
    assert err.ys.shape == (11, 2, 1) and torch.isfinite(err.ys[0]).all()
    assert torch.isnan(err.ys[-1]).all()
    assert err.stats["n_steps"] > 0


class BadG:
    def __init__(self, noise_type, shape_fn):
        self.noise_type, self.sde_type, self.shape_fn = noise_type, "ito", shape_fn

    def f(self, t, y):
        return -y

    def g(self, t, y):
        return torch.ones(self.shape_fn(y))


@pytest.mark.parametrize("noise_type,shape_fn,expected", [
    ("diagonal", lambda y: (*y.shape, 1), "noise_type='diagonal'"),
    ("scalar", lambda y: y.shape, r"\(B, d, 1\)"),
    ("additive", lambda y: y.shape, "noise_type='additive'"),
    ("general", lambda y: (y.shape[0], y.shape[1] + 1, 2), "noise_type='general'"),
])
def test_g_shape_contradicting_noise_type(noise_type, shape_fn, expected):
    with pytest.raises(FunctionOutputError, match=expected) as ei:
        sdeint(BadG(noise_type, shape_fn), torch.zeros(3, 2), [0.0, 1.0], method="euler")
    assert "sde.g" in str(ei.value) and "got" in str(ei.value)


def test_bad_inputs_name_the_argument():
    sde, y0 = Toy("diagonal"), torch.zeros(3, 2, dtype=F64)
    with pytest.raises(InvalidInputError, match=r"`bm`.*\(3, 2\).*got \(3, 5\)"):
        sdeint(sde, y0, [0.0, 1.0], bm=BrownianInterval(0.0, 1.0, (3, 5), dtype=F64))
    with pytest.raises(InvalidInputError, match="`bm`.*space-time"):
        sdeint(sde, y0, [0.0, 1.0], method="srk", bm=BrownianInterval(0.0, 1.0, (3, 2), dtype=F64))
    with pytest.raises(InvalidInputError, match="`ts`.*strictly increasing or strictly decreasing"):
        sdeint(sde, y0, [0.0, 0.5, 0.2])
    with pytest.raises(InvalidInputError, match="`ts`"):
        sdeint(sde, y0, torch.zeros(2, 2))
    for bad in (0.0, -1e-3, float("nan")):
        with pytest.raises(InvalidInputError, match="`dt` must be a finite number > 0"):
            sdeint(sde, y0, [0.0, 1.0], dt=bad)
    with pytest.raises(InvalidInputError,
                       match=r"valid methods are \['euler', 'milstein', 'srk'\].*'heun'"):
        sdeint(sde, y0, [0.0, 1.0], method="heun")
    with pytest.raises(InvalidInputError, match="unknown method.*'rk4'"):
        sdeint(sde, y0, [0.0, 1.0], method="rk4")
    with pytest.raises(InvalidInputError, match=r"valid methods are \['euler'\]"):
        sdeint(Toy("general"), y0, [0.0, 1.0], method="srk")
    with pytest.raises(InvalidInputError, match="noise_type"):
        sdeint(type("S", (), {"noise_type": "diag", "sde_type": "ito", "f": None, "g": None})(),
               y0, [0.0, 1.0])
    with pytest.raises(InvalidInputError, match="`y0`"):
        sdeint(sde, [0.0, 1.0], [0.0, 1.0])
    with pytest.raises(InvalidInputError, match="`options` keys"):
        sdeint(sde, y0, [0.0, 1.0], options={"gradfree": True})
    with pytest.raises(InvalidInputError, match="adaptive"):
        sdeint(sde, y0, [0.0, 1.0], adaptive="yes")
    with pytest.raises(FunctionOutputError, match="sde.f"):
        sdeint(type("S", (Toy,), {"f": lambda s, t, y: y[:, :1]})("diagonal"), y0, [0.0, 1.0])


def test_names_select_other_methods():
    class Named:
        noise_type, sde_type = "diagonal", "ito"

        def drift(self, t, y):
            return -y

        def diffusion(self, t, y):
            return 0.5 * torch.ones_like(y)

    y0 = torch.ones(3, 2, dtype=F64)
    bm = BrownianInterval(0.0, 1.0, (3, 2), dtype=F64, entropy=0)
    a = sdeint(Named(), y0, [0.0, 1.0], bm=bm, method="euler", dt=0.1,
               names={"drift": "drift", "diffusion": "diffusion"})
    plain = type("Plain", (), {"noise_type": "diagonal", "sde_type": "ito",
                               "f": Named.drift, "g": Named.diffusion})()
    b = sdeint(plain, y0, [0.0, 1.0], bm=bm, method="euler", dt=0.1)
    assert torch.equal(a, b)
    with pytest.raises(InvalidInputError, match="`sde` must define its drift"):
        sdeint(Named(), y0, [0.0, 1.0])
    with pytest.raises(InvalidInputError, match="`names` keys"):
        sdeint(Named(), y0, [0.0, 1.0], names={"drfit": "drift"})


def test_defaults_follow_torchsde():
    from solvers.sde.methods import default_method
    assert default_method("ito", "diagonal") == "srk"
    assert default_method("ito", "general") == "euler"
    assert default_method("stratonovich", "scalar") == "midpoint"


def test_f_and_g_and_g_prod_are_used():
    class Fast(Toy):
        calls = {"fg": 0, "gp": 0}

        def f_and_g(self, t, y):
            self.calls["fg"] += 1
            return self.f(t, y), self.g(t, y)

        def g_prod(self, t, y, v):
            self.calls["gp"] += 1
            return self.g(t, y) * v

    sde = Fast("diagonal", "stratonovich")
    y0 = torch.zeros(2, 2, dtype=F64)
    bm = BrownianInterval(0.0, 1.0, (2, 2), dtype=F64, entropy=0)
    a = sdeint(sde, y0, [0.0, 1.0], bm=bm, method="heun", dt=0.1)
    assert sde.calls["gp"] == 20
    b = sdeint(Toy("diagonal", "stratonovich"), y0, [0.0, 1.0], bm=bm, method="heun", dt=0.1)
    assert torch.allclose(a, b, atol=1e-14)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["euler", "srk"])
def test_runs_on_cuda(method):
    y0 = torch.randn(8, 3, 4, 4, device="cuda")
    sol = solve_sde(Images(), y0, torch.tensor([0.0, 0.1]), method=method, dt=0.01,
                    options={"seed": 0})
    assert sol.ys.device.type == "cuda" and torch.isfinite(sol.ys).all()
    bm = BrownianInterval(0.0, 0.1, (8, 3, 4, 4), device="cuda", entropy=0,
                          levy_area_approximation="space-time")
    out = sdeint(Images(), y0, [0.0, 0.1], bm=bm, method=method, dt=0.01, adaptive=True)
    assert out.device.type == "cuda"
