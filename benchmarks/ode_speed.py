"""ODE solver speed: sdeflow vs torchdiffeq vs torchode, measured in the same run.

Suites (issue 3):
  tiny        B=1, d=2 linear f, 1 thread: solver overhead per NFE = (wall - NFE*t_f)/NFE
  mlp         B=1024, MLP 16->64->16 (tanh), t in [0, 5], rtol=atol=1e-6, dopri5
  vdp         Van der Pol with mu ~ U[0.2, 8] per row, B=256, t in [0, 10], rtol=atol=1e-6,
              per-sample step control; error vs a tight scipy DOP853 reference per row

Usage: python -m benchmarks.ode_speed [--out results/ode_speed] [--repeat 5] [--suites ...]
Writes ode_speed.json and ode_speed.md into --out and prints the tables.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, Dict, List

import numpy as np
import torch
import torchdiffeq
import torchode

from benchmarks.common import run_suites, time_call
from solvers import solve_ode


class Counted(torch.nn.Module):
    """Wraps f to count batched calls (same wrapper for every library)."""

    def __init__(self, f: Callable) -> None:
        super().__init__()
        self.f = f
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.f(t, y)


def _t_f(f: Callable, t, y, n: int = 200) -> float:
    return time_call(lambda: f(t, y), repeat=5, warmup=2, min_time=0.02)["median"]


def _torchode_solve(f: Callable, y0: torch.Tensor, t: torch.Tensor, rtol: float, atol: float):
    term = torchode.ODETerm(f)
    method = torchode.Dopri5(term=term)
    ctrl = torchode.IntegralController(atol=atol, rtol=rtol, term=term)
    solver = torchode.AutoDiffAdjoint(method, ctrl)
    t_eval = t.unsqueeze(0).expand(y0.shape[0], -1)
    return solver.solve(torchode.InitialValueProblem(y0=y0, t_eval=t_eval))


def _measure(name: str, run: Callable[[], object], counted: Counted, t_f: float,
             repeat: int) -> Dict[str, object]:
    counted.calls = 0
    run()
    calls = counted.calls
    timing = time_call(run, repeat=repeat, warmup=0)
    wall = timing["median"]
    return {"solver": name, "wall_ms": wall * 1e3, "f_calls": calls,
            "t_f_us": t_f * 1e6, "overhead_us_per_call": (wall - calls * t_f) / calls * 1e6,
            "wall_over_nfe_tf": wall / (calls * t_f)}


def suite_tiny(repeat: int) -> List[Dict[str, object]]:
    A = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]])
    f = Counted(lambda t, y: y @ A.T)
    y0 = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([0.0, 10.0])
    t_f = _t_f(f, t[0], y0)
    rows = []
    cases = {
        "rk4 (h=0.01)": [
            ("sdeflow", lambda: solve_ode(f, y0, t, method="rk4", step_size=0.01)),
            ("torchdiffeq", lambda: torchdiffeq.odeint(f, y0, t, method="rk4",
                                                       options={"step_size": 0.01})),
        ],
        "dopri5 (tol 1e-8)": [
            ("sdeflow", lambda: solve_ode(f, y0, t, rtol=1e-8, atol=1e-8)),
            ("torchdiffeq", lambda: torchdiffeq.odeint(f, y0, t, rtol=1e-8, atol=1e-8)),
            ("torchode", lambda: _torchode_solve(f, y0, t, 1e-8, 1e-8)),
        ],
    }
    for case, runs in cases.items():
        for name, run in runs:
            row = _measure(name, run, f, t_f, repeat)
            rows.append({"case": case, **row})
    return rows


def _mlp_field() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 16))

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y)
    return Field()


def suite_mlp(repeat: int) -> List[Dict[str, object]]:
    field = _mlp_field()
    f = Counted(field)
    torch.manual_seed(1)
    y0 = torch.randn(1024, 16)
    t = torch.tensor([0.0, 5.0])
    t_f = _t_f(f, t[0], y0)
    rows = []
    with torch.no_grad():
        for name, run in [
            ("sdeflow joint", lambda: solve_ode(f, y0, t, rtol=1e-6, atol=1e-6)),
            ("sdeflow per-sample", lambda: solve_ode(f, y0, t, rtol=1e-6, atol=1e-6,
                                                     per_sample=True)),
            ("torchdiffeq", lambda: torchdiffeq.odeint(f, y0, t, rtol=1e-6, atol=1e-6)),
            ("torchode", lambda: _torchode_solve(f, y0, t, 1e-6, 1e-6)),
        ]:
            rows.append(_measure(name, run, f, t_f, repeat))
    return rows


def _vdp_problem(B: int = 256):
    g = torch.Generator().manual_seed(0)
    mu = 0.2 + 7.8 * torch.rand(B, generator=g, dtype=torch.float64)
    y0 = torch.zeros(B, 2, dtype=torch.float64)
    y0[:, 0] = 2.0 + 0.1 * torch.randn(B, generator=g, dtype=torch.float64)

    def vdp(t, y):
        x, v = y[:, 0], y[:, 1]
        return torch.stack([v, mu * (1 - x * x) * v - x], dim=1)
    return vdp, y0, mu


def _vdp_reference(mu: torch.Tensor, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    from scipy.integrate import solve_ivp
    out = []
    for m, y in zip(mu.tolist(), y0.tolist()):
        sol = solve_ivp(lambda s, z: [z[1], m * (1 - z[0] ** 2) * z[1] - z[0]],
                        (float(t[0]), float(t[-1])), y, method="DOP853", rtol=1e-12,
                        atol=1e-12, t_eval=t.tolist())
        out.append(sol.y.T)
    return torch.tensor(np.stack(out, axis=1))  # (T, B, 2)


def suite_vdp(repeat: int) -> List[Dict[str, object]]:
    vdp, y0, mu = _vdp_problem()
    f = Counted(vdp)
    t = torch.linspace(0, 10, 11, dtype=torch.float64)
    t_rows = t.unsqueeze(1).expand(-1, y0.shape[0])
    ref = _vdp_reference(mu, y0, t)
    t_f = _t_f(f, t[0], y0)
    rows = []
    runs = [
        ("sdeflow per-sample", lambda: solve_ode(f, y0, t, rtol=1e-6, atol=1e-6,
                                                 per_sample=True)),
        # Our dopri5 uses Hairer's embedded estimator (E1 = 71/57600, as scipy's RK45);
        # torchdiffeq and torchode use the alternative b_hat (1951/21600, ...), whose
        # estimate is 2/3 as large. This row loosens our tolerance by that factor 1.5 to
        # compare at matched error (see max_err_vs_ref).
        ("sdeflow per-sample, tol x1.5 (matched error)",
         lambda: solve_ode(f, y0, t, rtol=1.5e-6, atol=1.5e-6, per_sample=True)),
        # the same times given per row, t of shape (T, B): the per-row grid machinery's cost
        ("sdeflow per-sample, per-row times (T, B)",
         lambda: solve_ode(f, y0, t_rows, rtol=1e-6, atol=1e-6, per_sample=True)),
        ("sdeflow joint", lambda: solve_ode(f, y0, t, rtol=1e-6, atol=1e-6)),
        ("torchdiffeq", lambda: torchdiffeq.odeint(f, y0, t, rtol=1e-6, atol=1e-6)),
        ("torchode", lambda: _torchode_solve(f, y0, t, 1e-6, 1e-6)),
    ]
    with torch.no_grad():
        for name, run in runs:
            row = _measure(name, run, f, t_f, repeat)
            out = run()
            if name.startswith("sdeflow"):
                ys, nfe = out.ys, out.stats["nfe"].double()
                row["mean_nfe_per_row"] = float(nfe.mean()) if nfe.dim() else float(nfe)
            elif name == "torchode":
                ys = out.ys.transpose(0, 1)
                row["mean_nfe_per_row"] = float(out.stats["n_f_evals"].double().mean())
            else:
                ys = out
                row["mean_nfe_per_row"] = float(row["f_calls"])
            row["max_err_vs_ref"] = float((ys - ref).abs().max())
            rows.append(row)
    return rows


def suite_events(repeat: int) -> List[Dict[str, object]]:
    """The cost of event location: harmonic oscillators x'' = -w^2 x (w per row), the event
    x = 0 from above (first at t* = pi / (2 w)), against a plain solve to the known t*
    (per row: t of shape (2, B)). Issue 16 asks for <= 10% extra wall."""
    from solvers import Event, solve_events
    B = 256
    w = torch.linspace(1.0, 3.0, B, dtype=torch.float64)
    y0 = torch.stack([torch.ones(B, dtype=torch.float64), torch.zeros(B, dtype=torch.float64)], 1)
    t_star = math.pi / (2 * w)
    joint_w = torch.full((B,), 2.0, dtype=torch.float64)
    rows = []
    for mode, ww in (("per-sample", w), ("joint", joint_w)):
        f = Counted(lambda t, y, ww=ww: torch.stack([y[:, 1], -(ww ** 2) * y[:, 0]], 1))
        per = mode == "per-sample"
        t_end = (math.pi / (2 * ww)) if per else (math.pi / (2 * ww[:1])).reshape(())
        t_plain = torch.stack([torch.zeros_like(t_end), t_end])
        ev = [Event(lambda t, y: y[:, 0] if per else y[:, 0].min(), direction=-1)]
        runs = [
            (f"{mode}: solve to the known event time", lambda: solve_ode(
                f, y0, t_plain, rtol=1e-8, atol=1e-10, per_sample=per)),
            (f"{mode}: solve_events", lambda: solve_events(
                f, y0, (0.0, 10.0), ev, rtol=1e-8, atol=1e-10, per_sample=per)),
        ]
        with torch.no_grad():
            for name, run in runs:
                row = _measure(name, run, f, _t_f(f, torch.tensor(0.0), y0), repeat)
                out = run()
                exact = t_star if per else math.pi / 4            # joint: w = 2 in every row
                if hasattr(out, "t"):
                    row["max_event_time_err"] = float((out.t - exact).abs().max())
                rows.append(row)
    return rows


SUITES = {"tiny": suite_tiny, "mlp": suite_mlp, "vdp": suite_vdp, "events": suite_events}
COLUMNS = {
    "tiny": ["case", "solver", "wall_ms", "f_calls", "t_f_us", "overhead_us_per_call"],
    "mlp": ["solver", "wall_ms", "f_calls", "t_f_us", "wall_over_nfe_tf"],
    "vdp": ["solver", "wall_ms", "f_calls", "mean_nfe_per_row", "max_err_vs_ref"],
    "events": ["solver", "wall_ms", "f_calls", "max_event_time_err"],
}
TITLES = {
    "tiny": "Tiny f (B=1, d=2, 1 thread): overhead per f call",
    "mlp": "MLP 16-64-16, B=1024, dopri5, rtol=atol=1e-6, t in [0, 5]",
    "vdp": "Van der Pol, mu ~ U[0.2, 8], B=256, dopri5, rtol=atol=1e-6, t in [0, 10]",
    "events": "Events: B=256 oscillators, first downward zero of x, dopri5, rtol 1e-8",
}


def main(argv=None) -> Dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/ode_speed")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--suites", nargs="*", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = run_suites("ode_speed", SUITES, args.suites, TITLES, COLUMNS, args.repeat, args.out)
    return results


if __name__ == "__main__":
    main()
