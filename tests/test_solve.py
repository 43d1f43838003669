"""The general entry point `solve(terms, solver, y0, saveat, controller=, adjoint=)`: the
same engine as solve_ode / solve_sde (bitwise: the same arithmetic in the same order),
SaveAt(steps=True), throw=False, controller-held tolerances, SDE gradient checkpointing."""
import math

import pytest
import torch

from solvers import (BacksolveAdjoint, BrownianInterval, CheckpointAdjoint, ConstantStepSize,
                     InvalidInputError, NonFiniteError, ODETerm, PIDController, SaveAt,
                     SDETerm, StepTo, sdeint, solve, solve_ode, solve_sde)

F64 = torch.float64


def osc(t, y):
    return torch.stack([y[..., 1], -y[..., 0]], -1)


Y0 = torch.tensor([[1.0, 0.0], [0.5, 0.2]], dtype=F64)
T = torch.linspace(0, 2, 5, dtype=F64)


class OU(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(0.7, dtype=F64))
        self.sigma = torch.nn.Parameter(torch.tensor(0.3, dtype=F64))

    def f(self, t, y):
        return -self.theta * y

    def g(self, t, y):
        return self.sigma * torch.ones_like(y) * (1 + 0.1 * y.sin())


@pytest.mark.parametrize("method,controller", [
    ("dopri5", None), ("tsit5", PIDController(rtol=1e-6, atol=1e-8)),
    ("rk4", ConstantStepSize(0.05)), ("rk4", StepTo(torch.linspace(0, 2, 17, dtype=F64)))])
def test_ode_solve_is_solve_ode(method, controller):
    sol = solve(ODETerm(osc), method, Y0, SaveAt(ts=T), controller=controller)
    kw = {} if not (isinstance(controller, PIDController) and controller.rtol) else \
        dict(rtol=controller.rtol, atol=controller.atol)
    ref = solve_ode(osc, Y0, T, method=method,
                    controller=None if kw else controller, **kw)
    assert torch.equal(sol.ys, ref.ys)
    assert int(sol.stats["nfe"]) == int(ref.stats["nfe"]) and sol.result == "success"


def test_controller_tolerances_replace_the_arguments():
    a = solve_ode(osc, Y0, T, controller=PIDController(rtol=1e-4, atol=1e-6), rtol=1e-9)
    b = solve_ode(osc, Y0, T, rtol=1e-4, atol=1e-6)
    assert torch.equal(a.ys, b.ys)
    with pytest.raises(InvalidInputError, match="give both `rtol` and `atol`"):
        PIDController(rtol=1e-3)
    with pytest.raises(InvalidInputError, match="`rtol` and `atol` cannot both be 0"):
        PIDController(rtol=0.0, atol=0.0)


def test_sde_solve_is_sdeint():
    bm = BrownianInterval(0.0, 2.0, (2, 2), dtype=F64, entropy=3)
    sol = solve(SDETerm(OU(), bm), "euler", Y0, SaveAt(ts=T), controller=ConstantStepSize(0.01))
    assert torch.equal(sol.ys, sdeint(OU(), Y0, T, bm=bm, method="euler", dt=0.01))
    assert int(sol.stats["n_steps"]) == 200 and sol.stats["nfe"] == sol.stats["nfe_f"]
    ctrl = PIDController(factor_max=1.5, rtol=1e-3, atol=1e-3)
    ad = solve(SDETerm(OU(), bm), "milstein", Y0, SaveAt(ts=T), controller=ctrl,
               first_step=0.1)
    ref = solve_sde(OU(), Y0, T, bm=bm, method="milstein", adaptive=True, dt=0.1,
                    options={"controller": ctrl})
    assert torch.equal(ad.ys, ref.ys) and int(ad.stats["n_rejected"]) >= 0


def test_saveat_steps_ode():
    sol = solve(ODETerm(osc), "dopri5", Y0, SaveAt(ts=T, steps=True))
    n = int(sol.stats["n_accepted"])
    assert sol.step_ts.shape == (n,) and sol.step_ys.shape == (n, *Y0.shape)
    assert bool((sol.step_ts.diff() > 0).all()) and float(sol.step_ts[-1]) == float(T[-1])
    exact = torch.stack([Y0[..., 0] * torch.cos(sol.step_ts)[:, None]
                         + Y0[..., 1] * torch.sin(sol.step_ts)[:, None]], 0)[0]
    # every step end lies on the solution (dopri5 at rtol 1e-7: global error < 1e-6 here)
    assert (sol.step_ys[..., 0] - exact).abs().max() < 1e-6
    assert sol.dense is None
    grid = solve(ODETerm(osc), "rk4", Y0, SaveAt(ts=T, steps=True),
                 controller=ConstantStepSize(0.25))
    on_grid = solve_ode(osc, Y0, torch.linspace(0, 2, 9, dtype=F64), method="rk4")
    assert torch.allclose(grid.step_ys, on_grid.ys[1:], rtol=0, atol=1e-14)
    with pytest.raises(InvalidInputError, match="joint-mode"):
        solve(ODETerm(osc), "dopri5", Y0, SaveAt(ts=T, steps=True), per_sample=True)


def test_saveat_steps_sde():
    bm = BrownianInterval(0.0, 2.0, (2, 2), dtype=F64, entropy=5)
    sol = solve(SDETerm(OU(), bm), "euler", Y0, SaveAt(ts=T, steps=True),
                controller=ConstantStepSize(0.1))
    assert sol.step_ts.shape == (20,) and torch.equal(sol.step_ys[4::5], sol.ys[1:])
    with pytest.raises(InvalidInputError, match="fixed-grid"):
        solve(SDETerm(OU(), bm), "euler", Y0, SaveAt(ts=T, steps=True),
              controller=PIDController())


def test_throw_false_returns_the_partial_solution():
    def blowup(t, y):
        return y ** 2

    t = torch.linspace(0, 2, 5, dtype=F64)
    y0 = torch.ones(1, dtype=F64)          # y = 1/(1 - t): blows up at t = 1
    with pytest.raises(NonFiniteError):
        solve(ODETerm(blowup), "rk4", y0, SaveAt(ts=t), controller=ConstantStepSize(0.1))
    sol = solve(ODETerm(blowup), "rk4", y0, SaveAt(ts=t), controller=ConstantStepSize(0.1),
                throw=False)
    assert sol.result == "NonFiniteError"
    assert abs(float(sol.ys[1]) - 2.0) < 1e-3 and math.isnan(float(sol.ys[-1]))


def test_sde_checkpoint_gradients_equal_direct():
    bm = BrownianInterval(0.0, 1.0, (2, 2), dtype=F64, entropy=9)
    grads = []
    for adjoint in (None, CheckpointAdjoint()):
        sde = OU()
        y0 = Y0.clone().requires_grad_(True)
        sol = solve(SDETerm(sde, bm), "milstein", y0, SaveAt(ts=torch.tensor([0.0, 1.0],
                    dtype=F64)), controller=ConstantStepSize(0.01), adjoint=adjoint)
        sol.ys[-1].square().sum().backward()
        grads.append(torch.stack([y0.grad.sum(), sde.theta.grad, sde.sigma.grad]))
    # the same arithmetic recomputed: equal to rounding
    assert torch.allclose(grads[0], grads[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("call,match", [
    (lambda: solve(ODETerm(osc), None, Y0, T), r"`saveat` must be a SaveAt"),
    (lambda: solve(osc, None, Y0, SaveAt(ts=T)), r"`terms` must be an ODETerm or an SDETerm"),
    (lambda: ODETerm(3), r"ODETerm: `func` must be callable"),
    (lambda: SaveAt(ts=T, dense="yes"), r"SaveAt: `dense` must be True or False"),
    (lambda: solve(SDETerm(OU()), None, Y0, SaveAt(ts=T), controller=StepTo(T)),
     r"`controller` for SDEs must be a ConstantStepSize or a PIDController"),
    (lambda: solve(SDETerm(OU()), None, Y0, SaveAt(ts=T, dense=True)),
     r"no per-sample step control or dense output"),
    (lambda: solve(ODETerm(osc), None, Y0, SaveAt(ts=T), throw=1), r"`throw` must be True"),
])
def test_bad_input(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call()


class Recorder:
    def __init__(self):
        self.before, self.after = [], []

    def before_step(self, t0, y0, h):
        self.before.append((float(t0), float(h)))

    def after_step(self, t0, y0, h, y1, accepted):
        self.after.append((float(t0), float(h), bool(accepted)))


@pytest.mark.parametrize("method,kw", [("dopri5", {}), ("rk4", {"step_size": 0.1})])
def test_step_callbacks_see_every_attempted_step(method, kw):
    rec = Recorder()
    sol = solve_ode(osc, Y0, T, method=method, callback=rec, **kw)
    assert len(rec.before) == len(rec.after) == int(sol.stats["n_steps"])
    assert sum(a for *_, a in rec.after) == int(sol.stats["n_accepted"])
    assert [b for b in rec.before] == [a[:2] for a in rec.after]
    # accepted steps tile [0, 2]: each starts where the previous accepted one ended
    acc = [(t0, h) for t0, h, a in rec.after if a]
    assert acc[0][0] == 0.0 and abs(sum(h for _, h in acc) - 2.0) < 1e-12
    for (t0, h), (t1, _) in zip(acc, acc[1:]):
        assert abs(t0 + h - t1) < 1e-12
    calls = []
    solve_ode(osc, Y0, T, method=method,
              callback=lambda t0, y0, h, y1, a: calls.append(y1.shape), **kw)
    assert calls and all(c == Y0.shape for c in calls)


def test_step_callbacks_bad_input():
    with pytest.raises(InvalidInputError, match="`callback` must be callable"):
        solve_ode(osc, Y0, T, callback=3)
    with pytest.raises(InvalidInputError, match="`callback` must be callable"):
        BacksolveAdjoint(callback="x")


@pytest.mark.parametrize("method,kw", [("dopri5", {}), ("rk4", {"step_size": 0.1})])
def test_step_callbacks_under_backsolve(method, kw):
    """The forward hooks see the forward steps; BacksolveAdjoint(callback=) sees every
    step of the backward solves (on the flat augmented state [y, a, a_t, a_θ])."""
    fwd, bwd = Recorder(), Recorder()
    y0 = Y0.clone().requires_grad_(True)
    sol = solve_ode(osc, y0, T, method=method, callback=fwd,
                    gradient=BacksolveAdjoint(callback=bwd), **kw)
    assert len(fwd.after) == int(sol.stats["n_steps"]) and not bwd.after
    sol.ys.sum().backward()
    assert len(bwd.before) == len(bwd.after) > 0
    # the backward solves run from t = 2 back to 0: every accepted step tiles [0, 2]
    acc = [(t0, h) for t0, h, a in bwd.after if a]
    assert abs(sum(h for _, h in acc) + 2.0) < 1e-12 and acc[0][0] == 2.0
    if method == "rk4":         # 0.5-wide output intervals of 0.1 steps, forward and back
        assert len(fwd.after) == len(bwd.after) == 20


def test_step_callbacks_receive_tuple_states():
    seen = []
    y0 = (Y0[:, 0].clone(), Y0[:, 1].clone())
    solve_ode(lambda t, y: (y[1], -y[0]), y0, T,
              callback=lambda t0, y0_, h, y1, a: seen.append(tuple(p.shape for p in y1)))
    assert seen and all(s == ((2,), (2,)) for s in seen)
