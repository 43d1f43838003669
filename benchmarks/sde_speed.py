"""SDE solver speed: sdeflow vs torchsde vs hand-written Euler–Maruyama and SRA1 loops.

Ornstein–Uhlenbeck process dy = -θ y dt + σ dW, B=1024, d=16, dt=1e-3, 1000 steps, float32,
one thread. All rows are measured in the same run, interleaved: each of ``--repeat``
rounds runs every row once, and a row's time is its best round. ``--sweep`` adds the size
sweep of `benchmarks.sde_sizes` (B in 1..16384, d in 2..1024, time per step; a PNG).

    python -m benchmarks.sde_speed --out results/sde_speed [--repeat 5] [--steps 1000] [--sweep]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
from tqdm import tqdm

from benchmarks import sde_sizes
from benchmarks.common import best_of_rounds, markdown_table, write_results
from benchmarks.sde_workload import OU, raw_em, raw_sra1
from solvers import sdeint


def METHODS(diag: OU, add: OU, strat: OU) -> List[tuple]:  # noqa: N802
    """(method, SDE) rows: every torchsde method on the OU workload."""
    return [("euler", diag), ("milstein", diag), ("srk", diag), ("srk", add), ("heun", strat),
            ("midpoint", strat), ("reversible_heun", strat), ("euler_heun", strat),
            ("log_ode", strat)]


def main(argv: List[str] | None = None) -> Dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="results/sde_speed")
    p.add_argument("--repeat", type=int, default=5,
                   help="timing rounds, the runs interleaved per round, best kept")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--no-torchsde", action="store_true")
    p.add_argument("--sweep", action="store_true",
                   help="also the size sweep of `benchmarks.sde_sizes` (with a PNG)")
    p.add_argument("--sweep-rounds", type=int, default=3)
    p.add_argument("--sizes-b", type=int, nargs="+", default=list(sde_sizes.B_SIZES))
    p.add_argument("--sizes-d", type=int, nargs="+", default=list(sde_sizes.D_SIZES))
    p.add_argument("--max-elements", type=int, default=sde_sizes.MAX_ELEMENTS)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows, title = main_table(args)
    cols = ["solver", "method", "noise", "median_s", "min_s", "x_raw_loop", "x_hand_loop",
            "speedup_vs_torchsde"]
    tables = {title: markdown_table(rows, cols)}
    payload: Dict[str, object] = {
        "config": {"B": args.batch, "d": args.dim, "dt": 1e-3, "steps": args.steps,
                   "dtype": "float32", "threads": torch.get_num_threads(),
                   "repeat": args.repeat, "timing": "best of rounds, runs interleaved"},
        "rows": rows}
    if args.sweep:
        sweep_rows, notes = sde_sizes.sweep(args.sizes_b, args.sizes_d, args.max_elements,
                                            args.sweep_rounds, not args.no_progress)
        payload.update(sweep=sweep_rows, sweep_notes=notes)
        tables["Sizes: OU, float32, dt=1e-3, time per step (skipped: see JSON)"] = \
            markdown_table(sweep_rows, ["case", "solver", "steps", "us_per_step", "x_sdeflow"])
        sde_sizes.plot_sizes(sweep_rows, Path(args.out) / "sde_speed_sizes.png")
    path = write_results(args.out, "sde_speed", payload, tables)
    for t, table in tables.items():
        print(f"### {t}\n\n{table}\n")
    print(f"wrote {path}")
    return payload


def main_table(args: argparse.Namespace) -> Tuple[List[Dict[str, object]], str]:
    """Every method on OU (B, d) against torchsde's and the hand-written loops."""
    B, d, n, dt = args.batch, args.dim, args.steps, 1e-3
    T = n * dt
    y0 = torch.randn(B, d)
    ts = torch.tensor([0.0, T])
    diag, add = OU("diagonal", d), OU("additive", d)
    strat = OU("diagonal", d, "stratonovich")
    cases: List[tuple] = [("raw EM loop", "euler", "diagonal", lambda: raw_em(diag, y0, dt, n)),
                          ("raw SRA1 loop", "srk", "additive", lambda: raw_sra1(add, y0, dt, n))]

    def ours(sde: OU, method: str) -> Callable[[], torch.Tensor]:
        return lambda: sdeint(sde, y0, ts, method=method, dt=dt)

    for method, sde in METHODS(diag, add, strat):
        cases.append((f"sdeflow {method}", method, sde.noise_type, ours(sde, method)))
    if not args.no_torchsde:
        import torchsde

        def theirs(sde: OU, method: str) -> Callable[[], torch.Tensor]:
            levy = {"srk": "space-time", "log_ode": "foster"}.get(method, "none")

            def run() -> torch.Tensor:
                bm = torchsde.BrownianInterval(0.0, T, (B, d), levy_area_approximation=levy)
                return torchsde.sdeint(sde, y0, ts, bm=bm, method=method, dt=dt)
            return run

        for method, sde in METHODS(diag, add, strat):
            cases.append((f"torchsde {method}", method, sde.noise_type, theirs(sde, method)))
    runs = [(f"{name} / {noise}", fn) for name, _, noise, fn in cases]
    with torch.no_grad():
        for _, fn in tqdm(runs, desc="sde_speed warm-up", disable=args.no_progress):
            fn()
        timing = best_of_rounds(runs, args.repeat)
    rows = []
    for (name, method, noise, _), (key, _) in zip(cases, runs):
        ts_ = timing[key]["rounds"]
        rows.append({"solver": name, "method": method, "noise": noise,
                     "median_s": statistics.median(ts_), "min_s": timing[key]["best"]})
    # ratios of the best rounds: the least disturbed by other load on the machine
    raw = rows[0]["min_s"]
    by_key = {(r["solver"].split()[0], r["method"], r["noise"]): r["min_s"] for r in rows}
    for r in rows:
        r["x_raw_loop"] = r["min_s"] / raw
        hand = by_key.get(("raw", r["method"], r["noise"]))
        other = by_key.get(("torchsde", r["method"], r["noise"]))
        if r["solver"].startswith("sdeflow") and hand:
            r["x_hand_loop"] = r["min_s"] / hand
        if r["solver"].startswith("sdeflow") and other:
            r["speedup_vs_torchsde"] = other / r["min_s"]
    title = (f"OU, B={B}, d={d}, dt={dt:g}, {n} steps, float32, "
             f"{torch.get_num_threads()} thread(s)")
    return rows, title


if __name__ == "__main__":
    main()
