"""Adaptive SDE step control: strong error vs attempted steps, per method and tolerance.

Geometric Brownian motion dy = 0.5 y dt + 0.8 y dW (Itô; the same coefficients read as
Stratonovich for heun / midpoint), B=256 paths, exact solution from the same Brownian tree,
float64, t in [0, 1], first step 0.1, rtol = atol over a range; each point is the mean
over 4 Brownian seeds of the mean absolute error at t=1 and of the attempted steps. Run it
from two checkouts (PYTHONPATH) to compare step controllers at matched error:

    python -m benchmarks.sde_adaptive_efficiency --out results/sde_adaptive_efficiency
"""
from __future__ import annotations

import argparse
from typing import Dict, List

import torch

from benchmarks.common import markdown_table, write_results
from solvers import BrownianInterval, solve_sde

F64 = torch.float64
MU, SIGMA, B = 0.5, 0.8, 256
METHODS = {"euler": "ito", "milstein": "ito", "srk": "ito", "heun": "stratonovich",
           "midpoint": "stratonovich"}
TOLS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)


class GBM:
    noise_type = "diagonal"

    def __init__(self, sde_type: str) -> None:
        self.sde_type = sde_type

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return MU * y

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return SIGMA * y


def point(method: str, tol: float, seeds: int = 4) -> Dict[str, object]:
    """Mean error and steps of ``method`` at ``rtol = atol = tol``."""
    sde_type = METHODS[method]
    drift = MU - (0.5 * SIGMA ** 2 if sde_type == "ito" else 0.0)
    errs, steps = [], []
    for seed in range(seeds):
        bm = BrownianInterval(0.0, 1.0, (B, 1), dtype=F64, entropy=seed,
                              levy_area_approximation="space-time", tol=1e-9)
        y0 = torch.ones(B, 1, dtype=F64)
        exact = y0 * torch.exp(drift + SIGMA * bm(0.0, 1.0))
        sol = solve_sde(GBM(sde_type), y0, [0.0, 1.0], bm=bm, method=method, adaptive=True,
                        rtol=tol, atol=tol, dt=0.1, dt_min=1e-6)
        errs.append(float((sol.ys[-1] - exact).abs().mean()))
        steps.append(int(sol.stats["n_steps"]))
    return {"method": method, "tol": tol, "error": sum(errs) / seeds,
            "steps": sum(steps) / seeds}


def main(argv: List[str] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/sde_adaptive_efficiency")
    args = ap.parse_args(argv)
    rows = [point(m, tol) for m in METHODS for tol in TOLS]
    md = markdown_table(rows, ["method", "tol", "error", "steps"])
    path = write_results(args.out, "sde_adaptive_efficiency", {"rows": rows},
                         {"error vs steps": md})
    print(md)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
