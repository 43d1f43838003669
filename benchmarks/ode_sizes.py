"""The size sweep of `benchmarks.ode_speed`: wall time against batch size B and state size d
for a fixed-step (rk4) and an adaptive (dopri5) solve, sdeflow vs torchdiffeq vs torchode
on the same problem in the same run, so both the per-step overhead regime (small B*d) and
the throughput regime (large B*d) show.

The problem: d/2 damped rotating coordinate pairs, x' = -a x + w v, v' = -w x - a v, with
a = 0.1 and w from 1 to 3 across the pairs; exact solution x + iv = e^{(-a - iw) t}(x0 + iv0),
evaluated in float64 as the reference for the achieved error of the float32 solves. f costs
three elementwise passes over y, so at large sizes the solvers' own stage arithmetic is what
is measured, not f.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torchdiffeq
import torchode
from tqdm import tqdm

from benchmarks.common import Counted, best_of_rounds, save_figure, size_panel, time_call
from solvers import solve_ode

B_SIZES = (1, 64, 1024, 16384)
D_SIZES = (2, 64, 1024)
QUICK_B_SIZES = (1, 64)
QUICK_D_SIZES = (2, 64)
# 16384 x 1024 = 16.8M elements: one dopri5 solve holds ~9 such float32 tensors and a round
# of the six runs takes minutes on one core, so the default grid stops at 2^22 elements
MAX_ELEMENTS = 2 ** 22
T_END = 2.0
RK4_STEP = 0.02          # 100 steps, 400 f calls
TOL = 1e-5               # rtol = atol of the dopri5 solves (float32)
DAMPING = 0.1


def size_grid(b_sizes: Sequence[int], d_sizes: Sequence[int], max_elements: int
              ) -> Tuple[List[Tuple[int, int]], List[Dict[str, object]]]:
    """The (B, d) pairs to run, and the pairs skipped because B*d exceeds ``max_elements``
    (each with the reason, for the JSON)."""
    for name, sizes in (("b_sizes", b_sizes), ("d_sizes", d_sizes)):
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                            for s in sizes):
            raise ValueError(f"size_grid: `{name}` must be a non-empty list of positive "
                             f"integers; got {list(sizes)!r}")
    if any(d % 2 for d in d_sizes):
        raise ValueError(f"size_grid: every d must be even (coordinate pairs); got "
                         f"{list(d_sizes)!r}")
    run, skipped = [], []
    for d in d_sizes:
        for b in b_sizes:
            if b * d > max_elements:
                skipped.append({"B": b, "d": d, "reason": f"B*d = {b * d} elements > "
                                f"max_elements = {max_elements} (run time)"})
            else:
                run.append((b, d))
    return run, skipped


class RotatingPairs(torch.nn.Module):
    """f(t, y) for y of shape (B, d): the damped rotation of each coordinate pair."""

    def __init__(self, d: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        w = torch.linspace(1.0, 3.0, d // 2, dtype=torch.float64)
        self.w = w
        # f = -a * y + s * swap(y), swap exchanging each pair's two coordinates
        self.s = torch.stack([w, -w], dim=-1).reshape(d).to(dtype)
        self.neg_a = -DAMPING

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        swap = y.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
        return torch.addcmul(y * self.neg_a, swap, self.s)

    def exact(self, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The solution at times ``t``, shape (T, B, d), in float64."""
        z0 = torch.view_as_complex(y0.double().unflatten(-1, (-1, 2)).contiguous())
        lam = torch.complex(torch.full_like(self.w, -DAMPING), -self.w)
        z = torch.exp(lam * t.double()[:, None, None]) * z0
        return torch.view_as_real(z).flatten(-2)


def max_abs_error(ys: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest absolute deviation of a solution from the float64 reference."""
    if ys.shape != ref.shape:
        raise ValueError(f"max_abs_error: `ys` has shape {tuple(ys.shape)}, the reference "
                         f"{tuple(ref.shape)}")
    return float((ys.double() - ref).abs().max())


def torchode_solve(f: Callable, y0: torch.Tensor, t: torch.Tensor, rtol: float, atol: float,
                   method: str = "dopri5", controller: str = "integral",
                   **ctrl_kwargs: float) -> torchode.Solution:
    """torchode's solve (its own per-sample step control) with outputs at ``t``; the
    solution's ``ys`` has shape (B, T, ...)."""
    term = torchode.ODETerm(f)
    step = {"dopri5": torchode.Dopri5, "tsit5": torchode.Tsit5}[method](term=term)
    if controller == "integral":
        ctrl = torchode.IntegralController(atol=atol, rtol=rtol, term=term, **ctrl_kwargs)
    else:
        ctrl = torchode.PIDController(atol=atol, rtol=rtol, term=term, **ctrl_kwargs)
    solver = torchode.AutoDiffAdjoint(step, ctrl)
    t_eval = t.unsqueeze(0).expand(y0.shape[0], -1)
    return solver.solve(torchode.InitialValueProblem(y0=y0, t_eval=t_eval))


def solver_runs(solver: str, f: Callable, y0: torch.Tensor, t: torch.Tensor
                ) -> List[Tuple[str, Callable[[], torch.Tensor]]]:
    """(library, solve returning ys (T, B, d)) for one solver; torchode has no rk4."""
    if solver == "rk4":
        return [
            ("sdeflow", lambda: solve_ode(f, y0, t, method="rk4", step_size=RK4_STEP).ys),
            ("torchdiffeq (3/8 rule)", lambda: torchdiffeq.odeint(
                f, y0, t, method="rk4", options={"step_size": RK4_STEP})),
        ]
    return [
        ("sdeflow joint", lambda: solve_ode(f, y0, t, rtol=TOL, atol=TOL).ys),
        ("sdeflow per-sample", lambda: solve_ode(f, y0, t, rtol=TOL, atol=TOL,
                                                 per_sample=True).ys),
        ("torchdiffeq", lambda: torchdiffeq.odeint(f, y0, t, rtol=TOL, atol=TOL)),
        ("torchode (per-sample)", lambda: torchode_solve(f, y0, t, TOL, TOL).ys.transpose(0, 1)),
    ]


def measure_size(b: int, d: int, solver: str, rounds: int) -> List[Dict[str, object]]:
    """One (B, d, solver) case: every library's calls and error (first run, also the
    warm-up), then best-of-rounds wall time with the libraries interleaved per round."""
    gen = torch.Generator().manual_seed(b * 7919 + d)
    field = RotatingPairs(d)
    f = Counted(field)
    y0 = torch.randn(b, d, generator=gen)
    t = torch.tensor([0.0, T_END])
    ref = field.exact(y0, t)
    t_f = time_call(lambda: field(t[0], y0), repeat=3, warmup=1, min_time=0.01)["min"]
    runs = solver_runs(solver, f, y0, t)
    counts = {}
    with torch.no_grad():
        for name, run in runs:
            f.calls = 0
            ys = run()
            counts[name] = (f.calls, max_abs_error(ys, ref))
        # solves under ~20 ms loop within a round (a stable per-solve time under other load)
        timing = best_of_rounds(runs, rounds, min_time=0.02)
    rows = []
    for name, _ in runs:
        calls, err = counts[name]
        wall = timing[name]["best"]
        rows.append({"case": f"{solver} B={b} d={d}", "solver": name, "method": solver,
                     "B": b, "d": d, "wall_ms": wall * 1e3,
                     "wall_ms_rounds": [s * 1e3 for s in timing[name]["rounds"]],
                     "f_calls": calls, "t_f_us": t_f * 1e6, "us_per_call": wall / calls * 1e6,
                     "overhead_us_per_call": (wall - calls * t_f) / calls * 1e6,
                     "max_err_vs_exact": err})
    return rows


def sweep(b_sizes: Sequence[int], d_sizes: Sequence[int], max_elements: int, rounds: int,
          progress: bool = True) -> Tuple[List[Dict[str, object]], Dict[str, object]]:
    """The whole sweep: rows for every run case, and notes (grid, skipped cases)."""
    cases, skipped = size_grid(b_sizes, d_sizes, max_elements)
    rows: List[Dict[str, object]] = []
    jobs = [(b, d, s) for b, d in cases for s in ("rk4", "dopri5")]
    for b, d, solver in tqdm(jobs, desc="ode_speed sizes", disable=not progress):
        rows.extend(measure_size(b, d, solver, rounds))
    notes = {"b_sizes": list(b_sizes), "d_sizes": list(d_sizes), "max_elements": max_elements,
             "skipped": skipped, "problem": "damped rotating pairs, a=0.1, w in [1, 3], "
             f"t in [0, {T_END}], float32; rk4 step {RK4_STEP}; dopri5 rtol=atol={TOL}",
             "rounds": rounds, "timing": "best of rounds, libraries interleaved per round"}
    return rows, notes


def plot_sizes(rows: Sequence[Dict[str, object]], path: Path) -> Path:
    """Log-log wall time against B, one panel per (solver, d), one line per library."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    methods = sorted({r["method"] for r in rows}, key=["rk4", "dopri5"].index)
    ds = sorted({r["d"] for r in rows})
    fig, axes = plt.subplots(len(methods), len(ds), figsize=(4 * len(ds), 3.2 * len(methods)),
                             squeeze=False)
    for i, method in enumerate(methods):
        for j, d in enumerate(ds):
            sel = [r for r in rows if r["method"] == method and r["d"] == d]
            size_panel(axes[i][j], sel, "wall_ms", f"{method}, d={d}", "wall time [ms]")
    return save_figure(fig, path)
