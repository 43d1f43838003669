"""Per-step overhead of the fixed-step loops against hand-written torch loops, in one run.

Two tiny workloads where the solver's own per-step cost is all that is measured:

* ``ode``: rk4 on a linear f (B=1, d=2, float32, h=0.01, t in [0, 10]: 1000 steps, 4000
  f calls): sdeflow, torchdiffeq, and two hand-written rk4 loops (the textbook form, and
  one with the stage sums fused into ``torch.add(..., alpha=)``). Overhead per f call =
  (wall - calls * t_f) / calls, as `ode_speed` does, with t_f the time of one call of f
  (the same counted wrapper) timed in the same rounds.
* ``sde``: Ornstein–Uhlenbeck (B=1, d=2, float32, dt=1e-3, 1000 steps): sdeflow euler and
  srk (additive noise), torchsde's, and the hand-written Euler–Maruyama and SRA1 loops of
  `sde_speed`.

Besides wall times, every run's dispatched torch ops per step are counted (a
``TorchDispatchMode`` counter, no-grad) — what the loop costs when each op is dispatch
bound. Timing: best of ``--rounds`` rounds, the runs interleaved within each round.

    python -m benchmarks.step_overhead --out results/step_overhead [--rounds 7]

Writes step_overhead.json, .md and .png into ``--out``.
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from tqdm import tqdm

from benchmarks.common import (Counted, best_of_rounds, markdown_table, save_figure,
                               write_results)
from benchmarks.sde_workload import OU, raw_em, raw_sra1
from solvers import sdeint, solve_ode

Run = Tuple[str, Callable[[], object]]
H, T_END = 0.01, 10.0
DT, SDE_STEPS = 1e-3, 1000


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def ops_of(fn: Callable[[], object]) -> collections.Counter:
    with torch.no_grad(), OpCounter() as counter:
        fn()
    return counter.counts


def hand_rk4(f: Callable, y: torch.Tensor, h: float, n: int) -> torch.Tensor:
    """The textbook loop: every stage sum and scaling its own op."""
    t = torch.zeros((), dtype=y.dtype)
    for _ in range(n):
        k1 = f(t, y)
        k2 = f(t + h / 2, y + h / 2 * k1)
        k3 = f(t + h / 2, y + h / 2 * k2)
        k4 = f(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        t = t + h
    return y


def hand_rk4_fused(f: Callable, y: torch.Tensor, h: float, n: int) -> torch.Tensor:
    """The same with the scalings folded into ``alpha=`` and the half-step time shared."""
    t = torch.zeros((), dtype=y.dtype)
    for _ in range(n):
        tm = t + h / 2
        k1 = f(t, y)
        k2 = f(tm, torch.add(y, k1, alpha=h / 2))
        k3 = f(tm, torch.add(y, k2, alpha=h / 2))
        t = t + h
        k4 = f(t, torch.add(y, k3, alpha=h))
        acc = torch.add(torch.add(k1, k4), torch.add(k2, k3), alpha=2.0)
        y = torch.add(y, acc, alpha=h / 6)
    return y


def ode_runs() -> Tuple[List[Run], Counted, int]:
    import torchdiffeq
    A = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]])
    f = Counted(lambda t, y: y @ A.T)
    y0 = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([0.0, T_END])
    n = round(T_END / H)
    runs = [
        ("sdeflow rk4", lambda: solve_ode(f, y0, t, method="rk4", step_size=H)),
        ("torchdiffeq rk4", lambda: torchdiffeq.odeint(f, y0, t, method="rk4",
                                                       options={"step_size": H})),
        ("hand-written rk4", lambda: hand_rk4(f, y0, H, n)),
        ("hand-written rk4, fused", lambda: hand_rk4_fused(f, y0, H, n)),
    ]
    return runs, f, n


def sde_runs() -> Tuple[List[Run], int]:
    import torchsde
    d = 2
    y0 = torch.tensor([[1.0, -0.5]])
    ts = torch.tensor([0.0, SDE_STEPS * DT])
    diag, add = OU("diagonal", d), OU("additive", d)

    def theirs(sde: OU, method: str) -> Callable[[], object]:
        levy = "space-time" if method == "srk" else "none"

        def run():
            bm = torchsde.BrownianInterval(0.0, float(ts[-1]), (1, d),
                                           levy_area_approximation=levy)
            return torchsde.sdeint(sde, y0, ts, bm=bm, method=method, dt=DT)
        return run

    runs = [
        ("sdeflow euler", lambda: sdeint(diag, y0, ts, method="euler", dt=DT)),
        ("torchsde euler", theirs(diag, "euler")),
        ("hand-written Euler-Maruyama", lambda: raw_em(diag, y0, DT, SDE_STEPS)),
        ("sdeflow srk (additive)", lambda: sdeint(add, y0, ts, method="srk", dt=DT)),
        ("torchsde srk (additive)", theirs(add, "srk")),
        ("hand-written SRA1 (additive)", lambda: raw_sra1(add, y0, DT, SDE_STEPS)),
    ]
    return runs, SDE_STEPS


def measure(runs: Sequence[Run], steps: int, rounds: int, progress: bool
            ) -> List[Dict[str, object]]:
    """Op counts (one run each) and best-of-rounds wall time, runs interleaved per round."""
    rows = []
    for name, fn in tqdm(runs, desc="op counts", disable=not progress):
        counts = ops_of(fn)
        rows.append({"run": name, "ops_per_step": sum(counts.values()) / steps,
                     "top_ops": dict(counts.most_common(6))})
    with torch.no_grad():
        timing = best_of_rounds(list(runs), rounds)
    for row in rows:
        row["wall_ms"] = timing[row["run"]]["best"] * 1e3
        row["us_per_step"] = row["wall_ms"] * 1e3 / steps
    return rows


def suite_ode(rounds: int, progress: bool) -> List[Dict[str, object]]:
    runs, f, n = ode_runs()
    t0, y0 = torch.tensor(0.0), torch.tensor([[1.0, 0.0]])
    calls = {}
    with torch.no_grad():
        for name, fn in runs:
            f.calls = 0
            fn()
            calls[name] = f.calls
    # f alone, as many calls as a solve makes, timed in the same rounds (the same load)
    f_only = ("f alone", lambda: [f(t0, y0) for _ in range(4 * n)])
    rows = measure(runs + [f_only], n, rounds, progress)
    t_f = rows.pop()["wall_ms"] * 1e-3 / (4 * n)
    for row in rows:
        c = calls[row["run"]]
        row.update(f_calls=c, t_f_us=t_f * 1e6,
                   overhead_us_per_call=(row["wall_ms"] * 1e-3 - c * t_f) / c * 1e6)
    return rows


def plot(results: Dict[str, List[Dict[str, object]]], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, (suite, key, label) in zip(axes, [("ode", "overhead_us_per_call",
                                               "overhead per f call [µs]"),
                                              ("sde", "us_per_step", "time per step [µs]")]):
        rows = results[suite]
        ax.barh([r["run"] for r in rows], [r[key] for r in rows], color="tab:blue")
        for i, r in enumerate(rows):
            ax.text(r[key], i, f" {r[key]:.1f} ({r['ops_per_step']:.0f} ops/step)",
                    va="center", fontsize=7)
        ax.set_xlabel(label)
        ax.set_title({"ode": "rk4, B=1, d=2, h=0.01", "sde": "OU, B=1, d=2, dt=1e-3"}[suite])
        ax.invert_yaxis()
    return save_figure(fig, path)


def main(argv: List[str] | None = None) -> Dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/step_overhead")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    progress = not args.no_progress
    results = {"ode": suite_ode(args.rounds, progress)}
    runs, steps = sde_runs()
    results["sde"] = measure(runs, steps, args.rounds, progress)
    tables = {
        "rk4, linear f, B=1, d=2, float32, h=0.01, 1000 steps, 1 thread": markdown_table(
            results["ode"], ["run", "wall_ms", "f_calls", "t_f_us", "overhead_us_per_call",
                             "ops_per_step"]),
        "OU, B=1, d=2, float32, dt=1e-3, 1000 steps, 1 thread": markdown_table(
            results["sde"], ["run", "wall_ms", "us_per_step", "ops_per_step"]),
    }
    payload = {"config": {"rounds": args.rounds, "threads": torch.get_num_threads()},
               "suites": results}
    path = write_results(args.out, "step_overhead", payload, tables)
    plot(results, Path(args.out) / "step_overhead.png")
    for title, table in tables.items():
        print(f"### {title}\n\n{table}\n")
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
