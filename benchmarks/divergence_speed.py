"""Divergence speed and estimator variance.

Suites:
  speed     wall time of divergence(fn, x): exact as one autograd.grad per dimension ("loop"),
            exact as torch.func vmap over one vjp ("vmap"), the automatic choice ("auto"),
            Hutchinson with 1 probe and Hutch++ with 3 products; forward only
            (create_graph=False) and forward + backward of div.sum() (create_graph=True, as
            in CNF training). float32, MLPs d -> 64 -> 64 -> d (tanh) and a conv net on
            (B, 1, 8, 8).
  variance  empirical variance of Hutchinson vs Hutch++ at equal product counts on
            f(x) = A x, A = U diag(0.5^i) Uᵀ (d=40), 4000 independent estimates each.

Usage: python -m benchmarks.divergence_speed [--out results/divergence_speed] [--repeat 5]
Writes divergence_speed.json and divergence_speed.md into --out and prints the tables.
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict, List

import torch
from torch import nn

import solvers.divergence as dv
from benchmarks.common import run_suites, time_call


class ConvField(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


def _mlp(d: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                         nn.Linear(64, d))


def _variants(fn: nn.Module, x: torch.Tensor, cg: bool) -> Dict[str, Callable[[], object]]:
    eps1 = dv.sample_probes(x, 1)
    eps3 = dv.sample_probes(x, 3)

    def wrap(call: Callable[[], tuple]) -> Callable[[], object]:
        def run() -> object:
            _, div = call()
            if cg:
                div.sum().backward()
            return div
        return run

    return {
        "exact loop": wrap(lambda: dv._exact(fn, x, cg, False)),
        "exact vmap": wrap(lambda: dv._exact(fn, x, cg, True)),
        "exact auto": wrap(lambda: dv.divergence(fn, x, create_graph=cg)),
        "hutchinson n=1": wrap(lambda: dv.divergence(fn, x, method="hutchinson", probes=eps1,
                                                     create_graph=cg)),
        "hutch++ n=3": wrap(lambda: dv.divergence(fn, x, method="hutch++", probes=eps3,
                                                  create_graph=cg)),
    }


def suite_speed(repeat: int) -> List[Dict[str, object]]:
    torch.manual_seed(0)
    cases = [(f"MLP d={d}, B={B}", _mlp(d), torch.randn(B, d))
             for B in (16, 512) for d in (2, 8, 32)]
    cases.append(("conv 1x8x8, B=32", ConvField(), torch.randn(32, 1, 8, 8)))
    rows = []
    for name, fn, x in cases:
        for cg in (False, True):
            picks = "vmap" if dv._use_vmap(None, x[0].numel(), x) else "loop"
            row: Dict[str, object] = {"case": name, "create_graph": cg, "D": x[0].numel(),
                                      "auto picks": picks}
            for label, call in _variants(fn, x, cg).items():
                stats = time_call(call, repeat=repeat, warmup=2, min_time=0.05)
                row[f"{label} [ms]"] = 1e3 * stats["median"]
            rows.append(row)
    return rows


def suite_variance(repeat: int) -> List[Dict[str, object]]:
    d, N = 40, 4000
    g = torch.Generator().manual_seed(1)
    U, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=g))
    A = U @ torch.diag(0.5 ** torch.arange(d, dtype=torch.float64)) @ U.T
    x = torch.zeros(N, d, dtype=torch.float64)
    rows = []
    for n in (3, 6, 12, 24):
        torch.manual_seed(n)
        _, h = dv.divergence(lambda z: z @ A.T, x, method="hutchinson", n_probes=n)
        _, hpp = dv.divergence(lambda z: z @ A.T, x, method="hutch++", n_probes=n)
        rows.append({"products": n, "trace": float(A.trace()),
                     "hutchinson mean": float(h.mean()), "hutchinson var": float(h.var()),
                     "hutch++ mean": float(hpp.mean()), "hutch++ var": float(hpp.var()),
                     "var ratio hutch++/hutchinson": float(hpp.var() / h.var())})
    return rows


SUITES = {"speed": suite_speed, "variance": suite_variance}
COLUMNS = {
    "speed": ["case", "create_graph", "D", "auto picks", "exact loop [ms]", "exact vmap [ms]",
              "exact auto [ms]", "hutchinson n=1 [ms]", "hutch++ n=3 [ms]"],
    "variance": ["products", "trace", "hutchinson mean", "hutchinson var", "hutch++ mean",
                 "hutch++ var", "var ratio hutch++/hutchinson"],
}
TITLES = {
    "speed": "divergence wall time, float32 CPU (median ms; create_graph=True includes backward)",
    "variance": "Hutchinson vs Hutch++ variance at equal products, A = U diag(0.5^i) U^T, d=40",
}


def main(argv=None) -> Dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/divergence_speed")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--suites", nargs="*", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dv.divergence(nn.Linear(4, 4), torch.randn(2, 4))  # one-time torch.func import (~1 s)
    results = run_suites("divergence_speed", SUITES, args.suites, TITLES, COLUMNS, args.repeat,
                         args.out)
    return results


if __name__ == "__main__":
    main()
