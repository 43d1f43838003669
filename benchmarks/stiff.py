"""Stiff problems: sdeflow's implicit methods vs scipy's solve_ivp Radau / BDF / LSODA, in
the same run (issue 17).

Problems (float64, one torch thread, as scipy):
  robertson   Robertson's kinetics, t in [0, 1e5], rtol 1e-6, atol 1e-10
  vdp1e3      Van der Pol in Hairer's scaled form y1' = y2, y2' = ((1 - y1²) y2 - y1)/ε,
  vdp1e6      ε = 1/μ² (μ = 1e3, 1e6), y0 = (2, -0.66), t in [0, 3]: nearly two periods
              (3 - 2 ln 2 = 1.61 each), ending on a slow segment (a well-conditioned end
              state: at exactly two periods the end sits on a jump)
  hires       HIRES (8 species), t in [0, 321.8122]
  batch       B = 1024 Van der Pol rows with μ log-uniform in [1, 1e4] per row, per-sample
              step control; scipy Radau in a Python loop over an evenly spaced subset of
              rows (every `--stride`-th), its wall extrapolated to all rows; dopri5
              (explicit) on the same batch to show what stiffness costs it.

scipy is given NumPy fields and makes its own Jacobians (by differences); the batch rows
of sdeflow at rtol/10 and rtol/100 compare at matched accuracy (scipy's Radau error is
well below its tolerance).

References: solve_ivp Radau, BDF and LSODA at rtol 1e-10 (atol 1e-14): the first of them
that succeeds (Radau, else LSODA) is the reference, the others that succeed give its
uncertainty (`ref_spread`). ``err`` is
``max_i |y_i(T) - ref_i| / (|ref_i| + atol/rtol)``: a relative error with the absolute
floor the tolerances imply.

Usage: python -m benchmarks.stiff [--out results/stiff] [--problems ...] [--stride 32]
Writes stiff.json and stiff.md into --out and prints the tables.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Callable, Dict, List

import numpy as np
import torch
from scipy.integrate import solve_ivp

from benchmarks.common import markdown_table, write_results
from solvers import MaxStepsExceededError, SolverError, solve_ode

DT = torch.float64
METHODS = ("kvaerno3", "kvaerno4", "kvaerno5", "rodas4")
SCIPY = ("Radau", "BDF", "LSODA")
T_VDP = 3.0  # the period is ~3 - 2 ln 2 = 1.61: near two periods, ending on a slow segment


def robertson(t, y):
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    return torch.stack([-0.04 * y1 + 1e4 * y2 * y3,
                        0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 ** 2, 3e7 * y2 ** 2], -1)


def vdp(eps):
    def f(t, y):
        return torch.stack([y[..., 1], ((1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]) / eps],
                           -1)
    return f


def hires(t, y):
    y1, y2, y3, y4, y5, y6, y7, y8 = y.unbind(-1)
    r = 280.0 * y6 * y8
    return torch.stack([
        -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007, 1.71 * y1 - 8.75 * y2,
        -10.03 * y3 + 0.43 * y4 + 0.035 * y5, 8.32 * y2 + 1.71 * y3 - 1.12 * y4,
        -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
        -r + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7, r - 1.81 * y7, -r], -1)


PROBLEMS = {
    "robertson": (robertson, [1.0, 0.0, 0.0], 1e5, 1e-6, 1e-10),
    "vdp1e3": (vdp(1e-6), [2.0, -0.66], T_VDP, 1e-6, 1e-10),
    "vdp1e6": (vdp(1e-12), [2.0, -0.66], T_VDP, 1e-6, 1e-10),
    "hires": (hires, [1.0, 0, 0, 0, 0, 0, 0, 0.0057], 321.8122, 1e-6, 1e-10),
}


def _robertson_np(t, y):
    y1, y2, y3 = y
    return np.array([-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 ** 2,
                     3e7 * y2 ** 2])


def _vdp_np(eps: float) -> Callable:
    def f(t, y):
        return np.array([y[1], ((1 - y[0] ** 2) * y[1] - y[0]) / eps])
    return f


def _hires_np(t, y):
    return hires(None, torch.from_numpy(y)).numpy()


# scipy gets NumPy fields (its Jacobians by its own differences: njev counts them)
NUMPY = {"robertson": _robertson_np, "vdp1e3": _vdp_np(1e-6), "vdp1e6": _vdp_np(1e-12),
         "hires": _hires_np}


def _err(y: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> float:
    return float(np.max(np.abs(y - ref) / (np.abs(ref) + atol / rtol)))


def _scipy(f: Callable, y0, T: float, method: str, rtol: float, atol: float):
    start = time.perf_counter()
    r = solve_ivp(f, (0.0, T), y0, method=method, rtol=rtol, atol=atol)
    return r, time.perf_counter() - start


def _reference(f: Callable, y0, T: float, rtol: float, atol: float):
    """The end state from the tight solves that succeeded (Radau first; tight BDF and, for
    ε = 1e-12, tight Radau stop with a step-size failure), their spread, and which."""
    ok = []
    for m in SCIPY:
        r = _scipy(f, y0, T, m, 1e-10, 1e-14)[0]
        if r.status == 0:
            ok.append((m, r.y[:, -1]))
    if not ok:
        raise RuntimeError("no reference solve succeeded")
    ref = ok[0][1]
    spread = max([_err(y, ref, rtol, atol) for _, y in ok[1:]], default=float("nan"))
    return ref, spread, "+".join(m for m, _ in ok)


def single(name: str) -> List[Dict[str, object]]:
    """Every method on one problem, scipy first."""
    f, y0, T, rtol, atol = PROBLEMS[name]
    fnp = NUMPY[name]
    ref, spread, ref_note = _reference(fnp, y0, T, rtol, atol)
    rows = []
    for m in SCIPY:
        r, wall = _scipy(fnp, y0, T, m, rtol, atol)
        rows.append(dict(problem=name, solver=f"scipy {m}", wall_s=wall, steps=len(r.t) - 1,
                         nfe=r.nfev, n_jac=r.njev, n_lu=r.nlu,
                         err=_err(r.y[:, -1], ref, rtol, atol), ref_spread=spread,
                         status="ok" if r.status == 0 else "failed: " + r.message[:40],
                         reference=ref_note))
    for m in METHODS:
        start = time.perf_counter()
        sol = solve_ode(f, torch.tensor(y0, dtype=DT), torch.tensor([0.0, T], dtype=DT),
                        method=m, rtol=rtol, atol=atol, max_steps=200_000)
        wall = time.perf_counter() - start
        s = sol.stats
        rows.append(dict(problem=name, solver=f"sdeflow {m}", wall_s=wall,
                         steps=int(s["n_steps"]), rejected=int(s["n_rejected"]),
                         nfe=int(s["n_f_calls"]), n_jac=int(s["n_jac"]), n_lu=int(s["n_lu"]),
                         err=_err(sol.ys[-1].numpy(), ref, rtol, atol), ref_spread=spread,
                         status="ok"))
    return rows


def _batch_problem(B: int):
    mu = torch.exp(torch.rand(B, generator=torch.Generator().manual_seed(0), dtype=DT)
                   * math.log(1e4))
    eps = 1 / mu ** 2

    def f(t, y):
        return torch.stack([y[:, 1], ((1 - y[:, 0] ** 2) * y[:, 1] - y[:, 0]) / eps], -1)
    y0 = torch.tensor([[2.0, -0.66]], dtype=DT).repeat(B, 1)
    return f, y0, eps


def _batch_scipy(eps: torch.Tensor, rows: np.ndarray, rtol: float, atol: float):
    """scipy Radau row by row (the loop a user writes), and the tight reference."""
    out, ref, wall = [], [], 0.0
    for r in rows:
        f = _vdp_np(float(eps[r]))
        res, w = _scipy(f, [2.0, -0.66], T_VDP, "Radau", rtol, atol)
        wall += w
        out.append((res.y[:, -1], len(res.t) - 1))
        ref.append(_reference(f, [2.0, -0.66], T_VDP, rtol, atol)[0])
    return out, np.stack(ref), wall


def batch(B: int, stride: int) -> List[Dict[str, object]]:
    """The B-row batch: implicit per-sample solves vs a scipy loop over every stride-th row."""
    rtol, atol = 1e-6, 1e-10
    f, y0, eps = _batch_problem(B)
    rows_sub = np.arange(0, B, stride)
    sp, ref, sp_wall = _batch_scipy(eps, rows_sub, rtol, atol)
    sp_err = np.array([_err(y, r, rtol, atol) for (y, _), r in zip(sp, ref)])
    sp_steps = np.array([n for _, n in sp])
    out = [dict(solver="scipy Radau (loop)", wall_s=sp_wall * B / len(rows_sub),
                wall_note=f"{len(rows_sub)} rows timed, x{B / len(rows_sub):.0f}",
                steps_median=float(np.median(sp_steps)), steps_max=int(sp_steps.max()),
                err_median=float(np.median(sp_err)), err_max=float(sp_err.max()))]
    for m, tol in (("rodas4", rtol), ("rodas4", rtol / 10), ("rodas4", rtol / 100),
                   ("kvaerno5", rtol)):
        start = time.perf_counter()
        sol = solve_ode(f, y0, torch.tensor([0.0, T_VDP], dtype=DT), method=m, rtol=tol,
                        atol=atol * tol / rtol, per_sample=True, max_steps=200_000)
        wall = time.perf_counter() - start
        st = sol.stats["n_steps"].numpy()
        err = np.array([_err(sol.ys[-1, r].numpy(), ref[i], rtol, atol)
                        for i, r in enumerate(rows_sub)])
        out.append(dict(solver=f"sdeflow {m} (per sample, rtol {tol:g})", wall_s=wall,
                        speedup_vs_scipy=out[0]["wall_s"] / wall,
                        steps_median=float(np.median(st)), steps_max=int(st.max()),
                        err_median=float(np.median(err)), err_max=float(err.max()),
                        rows_err_le_scipy=f"{int((err <= sp_err).sum())}/{len(err)}",
                        n_jac=int(sol.stats["n_jac"][0]), n_lu=int(sol.stats["n_lu"][0])))
    out.append(_batch_dopri5(f, y0))
    return out


def _batch_dopri5(f: Callable, y0: torch.Tensor, max_steps: int = 20_000) -> Dict[str, object]:
    start = time.perf_counter()
    try:
        sol = solve_ode(f, y0, torch.tensor([0.0, T_VDP], dtype=DT), method="dopri5",
                        rtol=1e-6, atol=1e-10, per_sample=True, max_steps=max_steps)
        outcome = f"finished, max steps {int(sol.stats['n_steps'].max())}"
    except MaxStepsExceededError as e:
        reached = e.t.reshape(-1)
        outcome = (f"MaxStepsExceededError after {max_steps} steps: stiff rows reached "
                   f"t={float(reached.min()):.3g} of {T_VDP:.3g}; "
                   + ("diagnosed stiff" if "stiff" in str(e) else "no stiffness diagnosis"))
    except SolverError as e:
        outcome = f"{type(e).__name__}: {str(e)[:120]}"
    return dict(solver="sdeflow dopri5 (explicit)", wall_s=time.perf_counter() - start,
                outcome=outcome)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/stiff")
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS) + ["batch"])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--stride", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results, tables = {}, {}
    single_cols = ["problem", "solver", "wall_s", "steps", "rejected", "nfe", "n_jac", "n_lu",
                   "err", "status", "ref_spread", "reference"]
    batch_cols = ["solver", "wall_s", "wall_note", "speedup_vs_scipy", "steps_median",
                  "steps_max", "err_median", "err_max", "rows_err_le_scipy", "n_jac", "n_lu",
                  "outcome"]
    for name in args.problems:
        start = time.perf_counter()
        rows = batch(args.batch, args.stride) if name == "batch" else single(name)
        results[name] = rows
        title = f"batch of {args.batch} Van der Pol rows" if name == "batch" else name
        tables[title] = markdown_table(rows, batch_cols if name == "batch" else single_cols)
        print(f"### {title}\n{tables[title]}\n({time.perf_counter() - start:.1f} s)\n",
              flush=True)
    path = write_results(args.out, "stiff", {"suites": results, "threads": args.threads},
                         tables)
    print(f"wrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
