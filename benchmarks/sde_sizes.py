"""The size sweep of `benchmarks.sde_speed`: time per step against batch size B and state
size d, sdeflow vs torchsde vs a hand-written torch loop on the same OU problem in the same
run, so both the per-step overhead regime (small B*d) and the throughput regime (large
B*d, where drawing the Gaussian increments dominates every library) show.

Cases: euler (diagonal noise) with the raw Euler–Maruyama loop, srk with diagonal noise
(SRI2; no hand-written loop), srk with additive noise (SRA1) with the raw SRA1 loop. The
additive rows stop at d = 64: their (d, d) noise matrix products, B d² flops per product,
dominate beyond that, for every library alike. Each case runs ``steps = clamp(2^22 / (B d),
8, 500)`` steps of dt = 1e-3 (so every case costs about the same), float32, one thread;
sizes with B*d above ``max_elements`` are skipped and listed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from benchmarks.common import best_of_rounds, save_figure, size_panel
from benchmarks.sde_workload import OU, raw_em, raw_sra1
from solvers import sdeint

B_SIZES = (1, 64, 1024, 16384)
D_SIZES = (2, 64, 1024)
# 16384 x 1024 = 16.8M elements: srk holds ~10 such float32 tensors and torchsde's tree a
# few more per step; one round of its runs takes minutes on one core
MAX_ELEMENTS = 2 ** 22
ADDITIVE_MAX_D = 64
DT = 1e-3
CASES = (("euler", "diagonal"), ("srk", "diagonal"), ("srk", "additive"))
Run = Tuple[str, Callable[[], torch.Tensor]]


def steps_for(b: int, d: int) -> int:
    return int(min(500, max(8, (1 << 22) // (b * d))))


def size_grid(b_sizes: Sequence[int], d_sizes: Sequence[int], max_elements: int
              ) -> Tuple[List[Tuple[int, int, str, str]], List[Dict[str, object]]]:
    """The (B, d, method, noise) cases to run and those skipped, with the reason."""
    for name, sizes in (("b_sizes", b_sizes), ("d_sizes", d_sizes)):
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                            for s in sizes):
            raise ValueError(f"size_grid: `{name}` must be a non-empty list of positive "
                             f"integers; got {list(sizes)!r}")
    run, skipped = [], []
    for method, noise in CASES:
        for d in d_sizes:
            for b in b_sizes:
                why = _skip_reason(b, d, noise, max_elements)
                if why is None:
                    run.append((b, d, method, noise))
                else:
                    skipped.append({"B": b, "d": d, "method": method, "noise": noise,
                                    "reason": why})
    return run, skipped


def _skip_reason(b: int, d: int, noise: str, max_elements: int) -> Optional[str]:
    if b * d > max_elements:
        return f"B*d = {b * d} elements > max_elements = {max_elements} (run time)"
    if noise == "additive" and d > ADDITIVE_MAX_D:
        return f"additive noise with d > {ADDITIVE_MAX_D}: the (d, d) matrix products dominate"
    return None


def case_runs(b: int, d: int, method: str, noise: str, n: int) -> List[Run]:
    """(library, run) for one case, all from the same y0 and SDE object."""
    import torchsde
    gen = torch.Generator().manual_seed(b * 7919 + d)
    y0 = torch.randn(b, d, generator=gen)
    sde = OU(noise, d)
    ts = torch.tensor([0.0, n * DT])
    levy = "space-time" if method == "srk" else "none"

    def theirs() -> torch.Tensor:
        bm = torchsde.BrownianInterval(0.0, n * DT, (b, d), levy_area_approximation=levy)
        return torchsde.sdeint(sde, y0, ts, bm=bm, method=method, dt=DT)

    runs: List[Run] = [("sdeflow", lambda: sdeint(sde, y0, ts, method=method, dt=DT)),
                       ("torchsde", theirs)]
    if method == "euler":
        runs.append(("raw torch loop", lambda: raw_em(sde, y0, DT, n)))
    elif noise == "additive":
        runs.append(("raw torch loop", lambda: raw_sra1(sde, y0, DT, n)))
    return runs


def sweep(b_sizes: Sequence[int], d_sizes: Sequence[int], max_elements: int, rounds: int,
          progress: bool = True) -> Tuple[List[Dict[str, object]], Dict[str, object]]:
    """Rows (per case and library: time per step, best of rounds, libraries interleaved
    per round, plus the ratio to sdeflow's) and notes (grid, skipped cases)."""
    cases, skipped = size_grid(b_sizes, d_sizes, max_elements)
    rows: List[Dict[str, object]] = []
    with torch.no_grad():
        for b, d, method, noise in tqdm(cases, desc="sde_speed sizes", disable=not progress):
            n = steps_for(b, d)
            runs = case_runs(b, d, method, noise, n)
            for _, run in runs:
                run()                                     # warm-up
            timing = best_of_rounds(runs, rounds)
            ours = timing["sdeflow"]["best"]
            for name, _ in runs:
                best = timing[name]["best"]
                rows.append({"case": f"{method} {noise} B={b} d={d}", "solver": name,
                             "method": method, "noise": noise, "B": b, "d": d, "steps": n,
                             "us_per_step": best / n * 1e6,
                             "us_per_step_rounds": [s / n * 1e6 for s in timing[name]["rounds"]],
                             "x_sdeflow": best / ours})
    notes = {"b_sizes": list(b_sizes), "d_sizes": list(d_sizes), "max_elements": max_elements,
             "skipped": skipped, "dt": DT, "steps": "clamp(2^22 / (B d), 8, 500)",
             "rounds": rounds, "timing": "best of rounds, libraries interleaved per round"}
    return rows, notes


def plot_sizes(rows: Sequence[Dict[str, object]], path: Path) -> Path:
    """Log-log time per step against B, one panel per (case, d), one line per library."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys((r["method"], r["noise"]) for r in rows))
    ds = sorted({r["d"] for r in rows})
    fig, axes = plt.subplots(len(cases), len(ds), figsize=(4 * len(ds), 3.2 * len(cases)),
                             squeeze=False)
    for i, (method, noise) in enumerate(cases):
        for j, d in enumerate(ds):
            sel = [r for r in rows if (r["method"], r["noise"], r["d"]) == (method, noise, d)]
            size_panel(axes[i][j], sel, "us_per_step", f"{method} ({noise}), d={d}",
                       "time per step [µs]")
    return save_figure(fig, path)
