"""SDE solver speed: sdeflow vs torchsde vs a hand-written Euler–Maruyama loop.

Ornstein–Uhlenbeck process dy = -θ y dt + σ dW, B=1024, d=16, dt=1e-3, 1000 steps, float32,
one thread. All rows are measured in the same run:

    python -m benchmarks.sde_speed --out results/sde_speed [--repeat 5] [--steps 1000]
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, Dict, List

import torch

from benchmarks.common import markdown_table, time_call, write_results
from solvers import sdeint

THETA, SIGMA = 0.5, 0.3


class OU(torch.nn.Module):
    """OU with diagonal (or additive) noise; the same object is given to every solver."""

    sde_type = "ito"

    def __init__(self, noise_type: str, d: int, sde_type: str = "ito") -> None:
        super().__init__()
        self.noise_type = noise_type
        self.sde_type = sde_type
        self.register_buffer("sig_mat", SIGMA * torch.eye(d))

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -THETA * y

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.noise_type == "diagonal":
            return torch.full_like(y, SIGMA)
        return self.sig_mat.expand(y.shape[0], -1, -1)


def raw_em(sde: OU, y0: torch.Tensor, dt: float, n: int) -> torch.Tensor:
    """The hand-written reference loop: y += f dt + g * sqrt(dt) * N(0, 1)."""
    y, sq = y0, math.sqrt(dt)
    t = torch.zeros((), dtype=y0.dtype)
    for _ in range(n):
        y = y + sde.f(t, y) * dt + sde.g(t, y) * torch.randn_like(y) * sq
    return y


def METHODS(diag: OU, add: OU, strat: OU) -> List[tuple]:  # noqa: N802
    """(method, SDE) rows: every torchsde method on the OU workload."""
    return [("euler", diag), ("milstein", diag), ("srk", diag), ("srk", add), ("heun", strat),
            ("midpoint", strat), ("reversible_heun", strat), ("euler_heun", strat),
            ("log_ode", strat)]


def main(argv: List[str] | None = None) -> Dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="results/sde_speed")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--no-torchsde", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    B, d, n, dt = args.batch, args.dim, args.steps, 1e-3
    T = n * dt
    y0 = torch.randn(B, d)
    ts = torch.tensor([0.0, T])
    diag, add = OU("diagonal", d), OU("additive", d)
    strat = OU("diagonal", d, "stratonovich")

    cases: List[tuple] = [("raw EM loop", "euler", "diagonal", lambda: raw_em(diag, y0, dt, n))]

    def ours(sde: OU, method: str) -> Callable[[], torch.Tensor]:
        return lambda: sdeint(sde, y0, ts, method=method, dt=dt)

    for method, sde in METHODS(diag, add, strat):
        cases.append((f"sdeflow {method}", method, sde.noise_type, ours(sde, method)))
    if not args.no_torchsde:
        import torchsde

        def theirs(sde: OU, method: str) -> Callable[[], torch.Tensor]:
            levy = {"srk": "space-time", "log_ode": "foster"}.get(method, "none")
            size = (B, d)

            def run() -> torch.Tensor:
                bm = torchsde.BrownianInterval(0.0, T, size, levy_area_approximation=levy)
                return torchsde.sdeint(sde, y0, ts, bm=bm, method=method, dt=dt)
            return run

        for method, sde in METHODS(diag, add, strat):
            cases.append((f"torchsde {method}", method, sde.noise_type, theirs(sde, method)))

    rows = []
    with torch.no_grad():
        for name, method, noise, fn in cases:
            r = time_call(fn, repeat=args.repeat, warmup=1)
            rows.append({"solver": name, "method": method, "noise": noise,
                         "median_s": r["median"], "min_s": r["min"]})
            print(f"{name:28s} {noise:9s} {r['median']:.4f} s", flush=True)
    # Ratios use the best of `repeat` runs: the least disturbed by other load on the machine.
    raw = rows[0]["min_s"]
    by_key = {(r["solver"].split()[0], r["method"], r["noise"]): r["min_s"] for r in rows}
    for r in rows:
        r["x_raw_loop"] = r["min_s"] / raw
        other = by_key.get(("torchsde", r["method"], r["noise"]))
        if r["solver"].startswith("sdeflow") and other:
            r["speedup_vs_torchsde"] = other / r["min_s"]
    cols = ["solver", "method", "noise", "median_s", "min_s", "x_raw_loop", "speedup_vs_torchsde"]
    title = (f"OU, B={B}, d={d}, dt={dt:g}, {n} steps, float32, "
             f"{torch.get_num_threads()} thread(s)")
    payload = {"config": {"B": B, "d": d, "dt": dt, "steps": n, "dtype": "float32",
                          "threads": torch.get_num_threads(), "repeat": args.repeat},
               "rows": rows}
    write_results(args.out, "sde_speed", payload, {title: markdown_table(rows, cols)})
    print(markdown_table(rows, cols))
    return payload


if __name__ == "__main__":
    main()
