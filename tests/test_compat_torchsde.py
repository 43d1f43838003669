"""solvers.compat.torchsde: torchsde's API and semantics (signature, names, f/g forms, logqp,
extra state, warnings and errors, the Brownian family, euler_heun and log_ode).

The peer's own suite runs against this module as a slow test (`test_peer_suite`)."""
import math
import os
import subprocess

import pytest
import torch
from torch import nn

import solvers.compat.torchsde as torchsde
from solvers.compat.torchsde.settings import LEVY_AREA_APPROXIMATIONS, METHODS, NOISE_TYPES

F64 = torch.float64


class OU(torchsde.BaseSDE):
    """Posterior drift -θ y, prior drift 0, diffusion σ (diagonal): the log-ratio drift is
    ½ Σ (θ y / σ)²."""

    def __init__(self, theta=0.7, sigma=0.5, sde_type="ito"):
        super().__init__(noise_type="diagonal", sde_type=sde_type)
        self.theta = nn.Parameter(torch.tensor(theta, dtype=F64))
        self.sigma = sigma

    def f(self, t, y):
        return -self.theta * y

    def g(self, t, y):
        return torch.full_like(y, self.sigma)

    def h(self, t, y):
        return torch.zeros_like(y)


def test_settings_and_types_match_torchsde_names():
    assert METHODS.log_ode_midpoint == "log_ode" and "euler_heun" in METHODS
    assert NOISE_TYPES.all() == ["additive", "diagonal", "general", "scalar"]
    assert "foster" in LEVY_AREA_APPROXIMATIONS and "blah" not in LEVY_AREA_APPROXIMATIONS
    assert torchsde.types.TensorOrTensors is not None
    with pytest.raises(ValueError, match="noise type"):
        torchsde.BaseSDE(noise_type="diag", sde_type="ito")


def test_bm_is_positional_and_output_shape():
    sde = OU()
    y0 = torch.ones(4, 3, dtype=F64)
    bm = torchsde.BrownianInterval(0.0, 1.0, (4, 3), dtype=F64, entropy=1)
    a = torchsde.sdeint(sde, y0, [0.0, 0.5, 1.0], bm, method="euler", dt=0.1)
    b = torchsde.sdeint(sde, y0, torch.tensor([0.0, 0.5, 1.0], dtype=F64), bm=bm,
                        method="euler", dt=0.1)
    assert a.shape == (3, 4, 3) and torch.equal(a, b)


def test_logqp_is_the_integrated_kl_drift():
    # Every Euler step ends on an output time, so each log-ratio increment is dt times the
    # KL drift at the step's start: ½ Σ (θ y/σ)² dt, equal up to float64 rounding (~1e-15).
    sde = OU()
    y0 = torch.full((5, 2), 0.8, dtype=F64)
    ts = torch.linspace(0, 1, 11, dtype=F64)
    bm = torchsde.BrownianInterval(0.0, 1.0, (5, 3), dtype=F64, entropy=2)
    ys, kl = torchsde.sdeint(sde, y0, ts, bm, method="euler", dt=0.1, logqp=True)
    assert ys.shape == (11, 5, 2) and kl.shape == (10, 5)
    expect = 0.1 * 0.5 * ((0.7 * ys[:-1] / 0.5) ** 2).sum(-1)
    torch.testing.assert_close(kl, expect, rtol=1e-12, atol=1e-14)
    # the state path is the one without logqp (the extra coordinate has no noise)
    bm2 = torchsde.BrownianInterval(0.0, 1.0, (5, 2), dtype=F64, entropy=2)
    plain = torchsde.sdeint(sde, y0, ts, bm2, method="euler", dt=0.1)
    assert plain.shape == ys.shape


def test_logqp_adjoint_gradient_matches_direct():
    # Stratonovich midpoint forward; the adjoint integrates the same discretisation backwards
    # only approximately (O(dt) on this path), so the tolerance is loose but far below the
    # gradient's size (~1).
    sde = OU(sde_type="stratonovich")
    y0 = torch.full((3, 2), 0.8, dtype=F64, requires_grad=True)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    bm = torchsde.BrownianInterval(0.0, 1.0, (3, 3), dtype=F64, entropy=3)
    grads = []
    for solve in (torchsde.sdeint, torchsde.sdeint_adjoint):
        ys, kl = solve(sde, y0, ts, bm, method="midpoint", dt=1e-3, logqp=True)
        loss = ys[-1].pow(2).sum() + kl.sum()
        grads.append(torch.autograd.grad(loss, (y0, sde.theta)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-3)


class _Forms:
    """One general-noise SDE written with every pair of torchsde's functions."""

    noise_type = "general"

    def __init__(self, sde_type, forms):
        self.sde_type = sde_type
        self.A = torch.tensor([[0.3, -0.2], [0.1, 0.4], [-0.5, 0.2]], dtype=F64)
        for name in forms:
            setattr(self, name, getattr(self, "_" + name))

    def _f(self, t, y):
        return -y

    def _g(self, t, y):
        return y.unsqueeze(-1).sigmoid() * self.A

    def _f_and_g(self, t, y):
        return self._f(t, y), self._g(t, y)

    def _g_prod(self, t, y, v):
        return self._g(t, y).bmm(v.unsqueeze(-1)).squeeze(-1)

    def _f_and_g_prod(self, t, y, v):
        return self._f(t, y), self._g_prod(t, y, v)


@pytest.mark.parametrize("sde_type,method", [("ito", "euler"), ("stratonovich", "midpoint"),
                                             ("stratonovich", "euler_heun")])
def test_f_g_forms_give_identical_solutions(sde_type, method):
    y0 = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    outs = []
    for forms in (("f", "g"), ("f_and_g",), ("f", "g_prod"), ("f_and_g_prod",),
                  ("f_and_g", "g_prod")):
        bm = torchsde.BrownianInterval(0.0, 0.3, (4, 2), dtype=F64, entropy=4)
        outs.append(torchsde.sdeint(_Forms(sde_type, forms), y0, [0.0, 0.3], bm, method=method,
                                    dt=0.05)[1])
    for o in outs[1:]:
        assert torch.equal(o, outs[0])   # the same operations in the same order


def test_names_remap_drift_and_prior_drift():
    class Named(torchsde.SDEIto):
        def __init__(self):
            super().__init__(noise_type="diagonal")

        def forward(self, t, y):
            return -y

        def g(self, t, y):
            return torch.full_like(y, 0.5)

        def prior(self, t, y):
            return -y

    y0 = torch.ones(2, 3, dtype=F64)
    ys, kl = torchsde.sdeint(Named(), y0, [0.0, 0.5, 1.0], method="euler", dt=0.1,
                             names={"drift": "forward", "prior_drift": "prior"}, logqp=True)
    assert ys.shape == (3, 2, 3) and torch.equal(kl, torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="names"):
        torchsde.sdeint(Named(), y0, [0.0, 1.0], names={"drfit": "forward"})


def test_reversible_heun_extra_state_round_trip():
    # Solving the reversed SDE from the final (y, extra) on the reversed path recovers the
    # forward path: reversible Heun inverts algebraically (rounding only, ~1e-14 here).
    sde = _Forms("stratonovich", ("f", "g"))
    y0 = torch.full((3, 3), 0.1, dtype=F64)
    ts = torch.linspace(0, 1, 6, dtype=F64)
    bm = torchsde.BrownianInterval(0.0, 1.0, (3, 2), dtype=F64, entropy=5)
    ys, (f, g, z) = torchsde.sdeint(sde, y0, ts, bm, method="reversible_heun", dt=0.1,
                                    extra=True)
    minus = _Forms("stratonovich", ())
    minus.f = lambda t, y: -sde.f(-t, y)
    minus.g = lambda t, y: -sde.g(-t, y)
    back = torchsde.sdeint(minus, ys[-1], -ts.flip(0), torchsde.ReverseBrownian(bm),
                           method="reversible_heun", dt=0.1, extra_solver_state=(-f, -g, z))
    torch.testing.assert_close(back.flip(0), ys, rtol=1e-10, atol=1e-10)
    assert torchsde.sdeint(sde, y0, ts, bm, method="midpoint", dt=0.1, extra=True)[1] == ()


def test_torchsde_errors_and_warnings():
    sde = OU()
    y0 = torch.ones(2, 3, dtype=F64)
    with pytest.warns(UserWarning, match="Euler--Maruyama"):
        torchsde.sdeint(sde, y0, [0.0, 0.1], method="euler", adaptive=True, dt=0.05)
    with pytest.raises(ValueError, match="method"):
        torchsde.sdeint(sde, y0, [0.0, 0.1], method="heun")          # Stratonovich only
    with pytest.raises(ValueError, match="strictly increasing"):
        torchsde.sdeint(sde, y0, [0.1, 0.0])
    with pytest.raises(ValueError, match="2-dimensional"):
        torchsde.sdeint(sde, y0[0], [0.0, 0.1])
    bm = torchsde.BrownianInterval(0.0, 0.1, (2, 3), dtype=F64)
    with pytest.raises(ValueError, match="space-time"):
        torchsde.sdeint(sde, y0, [0.0, 0.1], bm, method="srk")
    with pytest.raises(ValueError, match="nn.Module"):
        torchsde.sdeint_adjoint(_Forms("ito", ("f", "g")), y0, [0.0, 0.1])
    with pytest.raises(ValueError, match="y0's shape"):        # torchsde: ValueError
        torchsde.sdeint(type("Bad", (OU,), {"f": lambda self, t, y: y[:, :1]})(), y0,
                        [0.0, 0.1])
    with pytest.warns(UserWarning, match="Unexpected arguments"):
        torchsde.sdeint(sde, y0, [0.0, 0.1], dt=0.05, bogus=1)


def test_brownian_family():
    w0 = torch.full((4, 2), 3.0, dtype=F64)
    path = torchsde.BrownianPath(t0=0.0, w0=w0)
    assert path(0.0).sub(w0).abs().max() == 0 and path(0.5).shape == (4, 2)
    tree = torchsde.BrownianTree(t0=0.0, t1=2.0, w0=w0, w1=w0 + 1, entropy=0)
    torch.testing.assert_close(tree(2.0), w0 + 1, rtol=0, atol=1e-12)
    assert torch.equal(tree(0.3), tree(0.3))
    bm = torchsde.brownian_interval_like(w0, t0=0.0, t1=1.0, entropy=7)
    assert bm.shape == (4, 2) and bm.dtype == F64 and bm.tol == 0.0
    rev = torchsde.ReverseBrownian(bm)
    assert torch.equal(rev(-0.8, -0.2), bm(0.2, 0.8))
    with pytest.raises(RuntimeError, match="ta <= tb"):
        bm(0.6, 0.2)
    with pytest.warns(UserWarning, match="t1"):
        bm(0.2, 1.5)


def test_levy_area_approximations():
    for approx in ("davie", "foster"):
        bm = torchsde.BrownianInterval(0.0, 1.0, (3, 4), dtype=F64, entropy=8,
                                       levy_area_approximation=approx)
        w, u, a = bm(0.1, 0.6, return_U=True, return_A=True)
        assert a.shape == (3, 4, 4) and torch.equal(a, -a.transpose(-1, -2))
        again = torchsde.BrownianInterval(0.0, 1.0, (3, 4), dtype=F64, entropy=8,
                                          levy_area_approximation=approx)
        again(0.3, 0.9)                                  # another query first: same values
        w2, u2, a2 = again(0.1, 0.6, return_U=True, return_A=True)
        assert torch.equal(w, w2) and torch.equal(u, u2) and torch.equal(a, a2)
    scalar = torchsde.BrownianInterval(0.0, 1.0, (5,), levy_area_approximation="davie")
    assert torch.equal(scalar(0.0, 0.5, return_A=True)[1], torch.zeros(5))
    given = torchsde.BrownianInterval(0.0, 1.0, W=torch.ones(3, dtype=F64))
    assert torch.equal(given(0.0, 1.0), torch.ones(3, dtype=F64))


class Iterated:
    """dX1 = ∘dW1, dX2 = X1 ∘dW2 (general, non-commutative): X2(T) = ∫ W1 ∘dW2 = ½ W1 W2 +
    A_12 exactly, so one log-ODE step from 0 is exact given the Lévy area."""

    noise_type, sde_type = "general", "stratonovich"

    def f(self, t, y):
        return torch.zeros_like(y)

    def g(self, t, y):
        g = torch.zeros(y.shape[0], 2, 2, dtype=y.dtype)
        g[:, 0, 0] = 1.0
        g[:, 1, 1] = y[:, 0]
        return g


def test_log_ode_uses_the_levy_area():
    bm = torchsde.BrownianInterval(0.0, 1.0, (6, 2), dtype=F64, entropy=9,
                                   levy_area_approximation="foster")
    y0 = torch.zeros(6, 2, dtype=F64)
    ys = torchsde.sdeint(Iterated(), y0, [0.0, 1.0], bm, method="log_ode", dt=1.0)
    w, a = bm(0.0, 1.0, return_A=True)
    expect = torch.stack([w[:, 0], 0.5 * w[:, 0] * w[:, 1] + a[:, 0, 1]], -1)
    torch.testing.assert_close(ys[-1], expect, rtol=1e-13, atol=1e-13)
    midpoint = torchsde.sdeint(Iterated(), y0, [0.0, 1.0], bm, method="midpoint", dt=1.0)
    assert (midpoint[-1] - expect).abs().max() > 1e-3      # without A it is not exact


@pytest.mark.slow
def test_peer_suite():
    """torchsde's own suite against this module (../shared/peer-suites; ~30 min)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = os.path.join(root, "..", "shared", "peer-suites", "run")
    if not os.path.exists(run):
        pytest.skip("no peer suites checked out beside the project")
    out = subprocess.run([run, "torchsde"], cwd=root, capture_output=True, text=True).stdout
    last = out.strip().splitlines()[-1]
    assert last.endswith(" 0 failed"), out
    assert math.isfinite(float(last.split()[2]))


def test_adaptive_reversible_heun_and_its_exact_adjoint():
    # Step doubling carries reversible Heun's (z, f, g) through the two half steps; the
    # adjoint inverts exactly those half steps, so its gradient equals backpropagation
    # through the solve up to rounding (observed ~1e-16; 1e-12 leaves room).
    class S(nn.Module):
        noise_type, sde_type = "general", "stratonovich"

        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor([[0.3, -0.2], [0.1, 0.4], [-0.5, 0.2]],
                                               dtype=F64))

        def f(self, t, y):
            return -torch.sin(y)

        def g(self, t, y):
            return torch.tanh(y).unsqueeze(-1) * self.a

    sde = S()
    y0 = torch.full((4, 3), 0.3, dtype=F64, requires_grad=True)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    bm = torchsde.BrownianInterval(0.0, 1.0, (4, 2), dtype=F64, entropy=1)
    kw = dict(method="reversible_heun", dt=0.1, adaptive=True, rtol=1e-3, atol=1e-3)
    ys = torchsde.sdeint(sde, y0, ts, bm, **kw)
    direct = torch.autograd.grad(ys.pow(2).sum(), (y0, sde.a))
    ys2, extra = torchsde.sdeint_adjoint(sde, y0, ts, bm, extra=True,
                                         adjoint_method="adjoint_reversible_heun", **kw)
    adjoint = torch.autograd.grad(ys2.pow(2).sum(), (y0, sde.a))
    assert torch.equal(ys, ys2) and len(extra) == 3
    for a, b in zip(direct, adjoint):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
