"""solve_events: event times on problems with closed forms, directions and terminal flags,
per-row events, and the implicit-function gradient of the event time."""
import math

import pytest
import torch

from solvers import InvalidInputError, MaxStepsExceededError
from solvers.events.root import illinois
from solvers.events.solve import Event, solve_events

F64 = torch.float64
# rtol = atol = 1e-10 with dopri5: the dense output (4th order) is accurate to ~1e-9 on
# these O(1) problems, and the root finder resolves 8 ulps; event times are checked to 1e-8.
TOL = dict(rtol=1e-10, atol=1e-10)
TIME_TOL = 1e-8


def decay(k):
    return lambda t, y: -k * y


def test_exponential_decay_crosses_a_level():
    k, c = 1.3, 0.25
    r = solve_events(decay(k), torch.ones(1, dtype=F64), (0.0, 10.0),
                     Event(lambda t, y: y[0] - c), **TOL)
    assert abs(float(r.t) - math.log(1 / c) / k) < TIME_TOL
    assert abs(float(r.y[0]) - c) < TIME_TOL
    assert int(r.event) == 0 and r.stats["n_chunks"] >= 1


def falling(g=9.81):
    return lambda t, y: torch.stack([y[1], torch.full_like(y[1], -g)])


def test_falling_body_ground_and_half_height():
    h, g = 10.0, 9.81
    events = [Event(lambda t, y: y[0], direction=-1),
              Event(lambda t, y: y[0] - h / 2, terminal=False)]
    r = solve_events(falling(g), torch.tensor([h, 0.0], dtype=F64), (0.0, math.inf), events,
                     **TOL)
    assert abs(float(r.t) - math.sqrt(2 * h / g)) < TIME_TOL
    assert abs(float(r.y[1]) + math.sqrt(2 * g * h)) < 1e-7   # impact speed sqrt(2gh)
    assert [hit.event for hit in r.hits] == [1, 0]
    assert abs(float(r.hits[0].t) - math.sqrt(h / g)) < TIME_TOL


def oscillator(w):
    """x'' = -w² x with rows of their own frequency w (B,)."""
    return lambda t, y: torch.stack([y[:, 1], -w ** 2 * y[:, 0]], dim=1)


def test_per_row_events_match_closed_form_and_row_by_row_solves():
    w = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=F64)
    y0 = torch.stack([torch.ones_like(w), torch.zeros_like(w)], dim=1)
    ev = Event(lambda t, y: y[:, 0], direction=-1)
    r = solve_events(oscillator(w), y0, (0.0, 20.0), ev, per_sample=True, **TOL)
    assert torch.allclose(r.t, math.pi / (2 * w), atol=TIME_TOL, rtol=0)
    assert r.event.tolist() == [0, 0, 0, 0]
    for i in range(w.shape[0]):
        one = solve_events(oscillator(w[i:i + 1]), y0[i:i + 1], (0.0, 20.0), ev,
                           per_sample=True, **TOL)
        # different batches: both within TIME_TOL of the true time, so within 2 * TIME_TOL
        assert abs(float(one.t[0]) - float(r.t[i])) < 2 * TIME_TOL
        assert torch.allclose(one.y[0], r.y[i], atol=1e-7, rtol=0)


def test_direction_selects_the_crossing():
    w = torch.tensor([1.0], dtype=F64)
    y0 = torch.tensor([[1.0, 0.0]], dtype=F64)
    fn = lambda t, y: y[:, 0]  # noqa: E731  cos(t): falls through 0 at pi/2, rises at 3pi/2
    down = solve_events(oscillator(w), y0, (0.0, 10.0), Event(fn, direction=-1),
                        per_sample=True, **TOL)
    up = solve_events(oscillator(w), y0, (0.0, 10.0), Event(fn, direction=1),
                      per_sample=True, **TOL)
    assert abs(float(down.t[0]) - math.pi / 2) < TIME_TOL
    assert abs(float(up.t[0]) - 3 * math.pi / 2) < TIME_TOL


def test_non_terminal_events_are_all_recorded_and_the_solve_reaches_t1():
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    f = lambda t, y: torch.stack([y[1], -y[0]])  # noqa: E731
    r = solve_events(f, y0, (0.0, 10.0), Event(lambda t, y: y[0], terminal=False), **TOL)
    want = [math.pi / 2 + k * math.pi for k in range(3)]      # zeros of cos in [0, 10]
    assert [round(float(h.t), 7) for h in r.hits] == [round(v, 7) for v in want]
    assert int(r.event) == -1 and float(r.t) == 10.0
    assert abs(float(r.y[0]) - math.cos(10.0)) < 1e-8


def test_rows_stop_independently_and_others_reach_t1():
    w = torch.tensor([1.0, 0.1], dtype=F64)          # row 1 crosses at 5*pi > t1 = 3
    y0 = torch.stack([torch.ones_like(w), torch.zeros_like(w)], dim=1)
    r = solve_events(oscillator(w), y0, (0.0, 3.0), Event(lambda t, y: y[:, 0]),
                     per_sample=True, **TOL)
    assert r.event.tolist() == [0, -1]
    assert abs(float(r.t[0]) - math.pi / 2) < TIME_TOL and float(r.t[1]) == 3.0
    assert abs(float(r.y[1, 0]) - math.cos(0.3)) < 1e-8


def _t_star(k, y0, c):
    r = solve_events(lambda t, y: -k * y, y0, (0.0, 10.0), Event(lambda t, y: y[0] - c),
                     rtol=1e-12, atol=1e-12)
    return r.t


def test_event_time_gradient_matches_finite_differences_and_closed_form():
    k = torch.tensor(0.7, dtype=F64, requires_grad=True)
    y0 = torch.tensor([2.0], dtype=F64, requires_grad=True)
    c = torch.tensor(0.3, dtype=F64, requires_grad=True)
    t = _t_star(k, y0, c)
    gk, gy, gc = torch.autograd.grad(t, (k, y0, c))
    # t* = ln(y0 / c) / k
    L = math.log(2.0 / 0.3)
    assert abs(float(gk) + L / 0.7 ** 2) < 1e-7
    assert abs(float(gy) - 1 / (0.7 * 2.0)) < 1e-7
    assert abs(float(gc) + 1 / (0.7 * 0.3)) < 1e-7
    # central differences: truncation ~eps² t''' ~ 1e-8, solver noise ~1e-12 / eps ~ 1e-8
    eps = 1e-4
    with torch.no_grad():
        fd = (_t_star(k + eps, y0, c) - _t_star(k - eps, y0, c)) / (2 * eps)
        fd_c = (_t_star(k, y0, c + eps) - _t_star(k, y0, c - eps)) / (2 * eps)
    assert abs(float(fd) - float(gk)) < 1e-6
    assert abs(float(fd_c) - float(gc)) < 1e-6


def test_state_at_event_has_the_total_derivative():
    # falling body from height h: at impact v* = -sqrt(2 g h), so dv*/dh = -g / sqrt(2 g h)
    h = torch.tensor(10.0, dtype=F64, requires_grad=True)
    y0 = torch.stack([h, torch.zeros((), dtype=F64)])
    r = solve_events(falling(), y0, (0.0, 5.0), Event(lambda t, y: y[0], direction=-1), **TOL)
    (gv,) = torch.autograd.grad(r.y[1], h)
    assert abs(float(gv) + 9.81 / math.sqrt(2 * 9.81 * 10.0)) < 1e-7


def test_per_row_event_gradients():
    k = torch.tensor([0.5, 1.0, 2.0], dtype=F64, requires_grad=True)
    r = solve_events(lambda t, y: -k[:, None] * y, torch.ones(3, 1, dtype=F64), (0.0, 10.0),
                     Event(lambda t, y: y[:, 0] - 0.5), per_sample=True, **TOL)
    (g,) = torch.autograd.grad(r.t.sum(), k)
    assert torch.allclose(g, -math.log(2) / k.detach() ** 2, atol=1e-7, rtol=0)


def test_no_event_with_infinite_horizon_raises():
    with pytest.raises(MaxStepsExceededError):
        solve_events(decay(1.0), torch.ones(1, dtype=F64), (0.0, math.inf),
                     Event(lambda t, y: y[0] + 1.0), max_steps=200)


@pytest.mark.parametrize("kwargs, match", [
    (dict(direction=2), "direction"), (dict(terminal=1), "terminal"), (dict(fn=3), "fn")])
def test_event_validation(kwargs, match):
    args = {"fn": lambda t, y: y, **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        Event(**args)


def test_bad_events_and_span():
    y0 = torch.ones(1, dtype=F64)
    with pytest.raises(InvalidInputError, match="events"):
        solve_events(decay(1.0), y0, (0.0, 1.0), [])
    with pytest.raises(InvalidInputError, match="t_span"):
        solve_events(decay(1.0), y0, (1.0, 1.0), Event(lambda t, y: y[0]))


def test_illinois_converges_on_a_cubic():
    # roots of x³ - 2 in [1, 2] and of x³ - 5 in [1, 2]: two brackets at once
    a = torch.tensor([1.0, 1.0], dtype=F64)
    b = torch.tensor([2.0, 2.0], dtype=F64)
    shift = torch.tensor([2.0, 5.0], dtype=F64)
    g = lambda x: x ** 3 - shift  # noqa: E731
    t, it = illinois(g, a, b, g(a), g(b), torch.full_like(a, 1e-14))
    assert torch.allclose(t, shift ** (1 / 3), atol=1e-13, rtol=0)
    assert it < 40   # superlinear: bisection would need ~47


def test_a_float_start_time_keeps_double_precision():
    # t0 as a Python float: rounding it through float32 would shift t* by ~5e-8
    t0, k, c = 1.2345678901234, 1.0, 0.5
    r = solve_events(decay(k), torch.ones(1, dtype=F64), (t0, 10.0),
                     Event(lambda t, y: y[0] - c), **TOL)
    assert abs(float(r.t) - (t0 + math.log(1 / c) / k)) < TIME_TOL


@pytest.mark.parametrize("per_sample", [False, True])
def test_the_event_state_is_the_solves_own_dense_output(per_sample):
    """The crossing step is kept as the solve took it (same start, size, stages), so the
    state at the event equals the plain solve's dense output there: the same polynomial,
    equal to a few ulps (its coefficients are formed by the same tensordot)."""
    from solvers import solve_ode
    w = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    if not per_sample:
        w = torch.full((3,), 2.0, dtype=F64)
    y0 = torch.stack([torch.ones_like(w), torch.zeros_like(w)], dim=1)
    fn = (lambda t, y: y[:, 0]) if per_sample else (lambda t, y: y[:, 0].min())
    r = solve_events(oscillator(w), y0, (0.0, 2.0), Event(fn, direction=-1),
                     per_sample=per_sample, event_gradient=False, **TOL)
    sol = solve_ode(oscillator(w), y0, torch.tensor([0.0, 2.0], dtype=F64),
                    per_sample=per_sample, dense=True, **TOL)
    if per_sample:
        ref = torch.stack([sol.evaluate(r.t[i:i + 1])[0, i] for i in range(3)])
    else:
        ref = sol.evaluate(r.t.reshape(1))[0]
    assert torch.allclose(r.y, ref, atol=1e-14, rtol=0)
    # one solve for the span, stopped at the event: at most two steps (7 evaluations
    # each) past the plain solve to the event time
    assert r.stats["n_chunks"] == 1
    to_event = solve_ode(oscillator(w), y0, torch.stack([torch.zeros_like(r.t), r.t]),
                         per_sample=per_sample, **TOL)
    assert r.stats["nfe"] <= int(to_event.stats["nfe"].max()) + 2 * 7


def test_fixed_step_events_per_row():
    """rk4 on a fixed step: rows cannot end early, so the solve runs in chunks and the
    monitor ignores stopped rows. Event times to rk4's dense-output accuracy at h = 1e-3
    (3rd-order Hermite extension: error ~ h^4 w^5 ~ 1e-10 here)."""
    w = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    y0 = torch.stack([torch.ones_like(w), torch.zeros_like(w)], dim=1)
    r = solve_events(oscillator(w), y0, (0.0, 10.0), Event(lambda t, y: y[:, 0], direction=-1),
                     per_sample=True, method="rk4", step_size=1e-3)
    assert torch.allclose(r.t, math.pi / (2 * w), atol=1e-8, rtol=0)
    assert r.event.tolist() == [0, 0, 0]


def test_user_callback_runs_beside_the_event_monitor():
    seen = []
    r = solve_events(decay(1.0), torch.ones(1, dtype=F64), (0.0, 10.0),
                     Event(lambda t, y: y[0] - 0.5), callback=lambda *a: seen.append(a[4]),
                     **TOL)
    assert abs(float(r.t) - math.log(2)) < TIME_TOL
    assert len(seen) > 3 and all(bool(a) for a in seen[-3:])


@pytest.mark.parametrize("kwargs, match", [
    (dict(gradient="backsolve"), "gradient"), (dict(dense=True), "dense"),
    (dict(compact=True), "compact")])
def test_options_that_do_not_apply_are_refused(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        solve_events(decay(1.0), torch.ones(1, dtype=F64), (0.0, 1.0),
                     Event(lambda t, y: y[0] - 0.5), **kwargs)


def test_events_with_an_implicit_method():
    """A stiff decay y' = -1000 (y - cos t) crossing y = 0.5: the event on the implicit
    solvers (kvaerno5), against the same event found with dopri5 at a tight tolerance."""
    def f(t, y):
        return -1000.0 * (y - torch.cos(t))

    y0 = torch.ones(1, dtype=torch.float64)
    ev = [Event(lambda t, y: y[0] - 0.5, direction=-1)]
    stiff = solve_events(f, y0, (0.0, 2.0), ev, method="kvaerno5", rtol=1e-8, atol=1e-10)
    ref = solve_events(f, y0, (0.0, 2.0), ev, method="dopri5", rtol=1e-10, atol=1e-12)
    # y tracks cos t within ~1e-3 (the 1/1000 lag), so the crossing is near arccos(0.5)
    assert abs(float(stiff.t) - float(ref.t)) < 1e-6
    assert abs(float(stiff.t) - math.acos(0.5)) < 2e-3


@pytest.mark.parametrize("cheap", [True, False])
def test_both_ways_of_keeping_crossing_steps_agree(cheap, monkeypatch):
    """The CPU keeps only the steps with a crossing (read on the host); accelerators merge
    every step with torch.where (a no-op for rows without a crossing), with no host read.
    Both forced here on the CPU, each checked against the closed forms (terminal and
    non-terminal crossings)."""
    import solvers.events.monitor as monitor
    monkeypatch.setattr(monitor, "cheap_read", lambda device: cheap)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=F64)
    y0 = torch.stack([torch.ones_like(w), torch.zeros_like(w)], dim=1)
    events = [Event(lambda t, y: y[:, 0], direction=-1),
              Event(lambda t, y: y[:, 1], terminal=False)]
    r = solve_events(oscillator(w), y0, (0.0, 20.0), events, per_sample=True, **TOL)
    assert torch.allclose(r.t, math.pi / (2 * w), atol=TIME_TOL, rtol=0)
    # the velocity's zeros before the stop: t = 0 is the start (no crossing), so none
    assert [h.event for h in r.hits] == [0, 0, 0, 0]
    r2 = solve_events(oscillator(w), y0, (0.0, 40.0), events[1:], per_sample=True, **TOL)
    # non-terminal: y' = -w sin(w t) crosses zero at k pi / w, k >= 1, up to t = 40
    want = sorted((i, k * math.pi / float(w[i])) for i in range(4)
                  for k in range(1, int(40 * float(w[i]) / math.pi) + 1))
    got = [(h.row, float(h.t)) for h in r2.hits]
    assert [g[0] for g in got] == [x[0] for x in want]
    assert max(abs(g[1] - x[1]) for g, x in zip(got, want)) < 1e-7
