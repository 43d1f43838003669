"""The compiled path (`solvers.compiled`) against the eager solvers and the peers, one run.

Cases (float32, one thread on the CPU):
  tiny rk4      B=1, d=2 linear f, rk4 h=0.01 on [0, 10] (1000 steps, 4000 f calls)
  tiny dopri5   the same f, dopri5 rtol=1e-7, atol=1e-9
  mlp rk4       B=1024, d=64, MLP 64-128-64 (tanh), rk4 h=0.05 on [0, 1]
  mlp dopri5    the same field, dopri5 rtol=atol=1e-6 on [0, 1]
  ou em         OU (theta 0.5, sigma 0.3), B=1024, d=16, euler dt=1e-3, 1000 steps
  unroll        tiny rk4 with 1, 4, 8, 16 steps per compiled call (compile time vs run)

Every compiled row reports its compile time separately from its run time: ``first_s`` is the
first call of a problem new to the process (every row is its own program; inductor's disk
caches off unless --warm-cache; the process's first compile also pays inductor's one-time
start-up), ``compile_s`` = first call - steady-state call, and ``run_ms`` the steady state:
the best of --rounds rounds with every row of a case interleaved per round (other work
shares this machine; ratios within a run are the robust figures). ``us_per_nfe`` = run
time / batched f calls. Peers (torchdiffeq, torchsde) and a hand-written torch loop run in
the same rounds. On CUDA (--device cuda) the fixed-grid ODE
cases add a row with CUDA-graph replay.

    python -m benchmarks.compiled --out results/compiled [--rounds 5] [--quick]

Writes compiled.json, compiled.md and compiled.png into --out.
"""
from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from tqdm import tqdm

from benchmarks.common import (Counted, best_of_rounds, markdown_table, save_figure,
                               write_results)
from benchmarks.sde_workload import OU, raw_em
from solvers import CompileOptions, sdeint, solve_ode
from solvers import compiled

Run = Tuple[str, Callable[[], object]]


def hand_rk4(f: Callable, y0: torch.Tensor, t0: float, h: float, n: int) -> torch.Tensor:
    """The hand-written reference: n classic rk4 steps in plain torch."""
    y, t = y0, torch.tensor(t0, dtype=y0.dtype, device=y0.device)
    for _ in range(n):
        k1 = f(t, y)
        k2 = f(t + h / 2, y + (h / 2) * k1)
        k3 = f(t + h / 2, y + (h / 2) * k2)
        k4 = f(t + h, y + h * k3)
        y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        t = t + h
    return y


def _first_call(fn: Callable[[], object]) -> Tuple[float, object]:
    """Seconds of the first call (every compiled row is a new problem to the program cache,
    so its first call compiles) and its output."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _final(out: object) -> torch.Tensor:
    ys = out.ys if hasattr(out, "ys") else out
    return ys[-1] if ys.dim() > 2 else ys


def measure(case: str, runs: List[Run], calls: Dict[str, int], rounds: int,
            min_time: float, reference: str) -> List[Dict[str, object]]:
    """One case: each run's first call (the compile time of the compiled rows), then the
    interleaved rounds; rows with the agreement with ``reference``."""
    firsts, outs = {}, {}
    for name, fn in runs:
        firsts[name], outs[name] = _first_call(fn) if "compiled" in name else (None, fn())
    timing = best_of_rounds(runs, rounds, min_time=min_time)
    ref = _final(outs[reference]).float()
    rows = []
    for name, _ in runs:
        run_s = timing[name]["best"]
        got = _final(outs[name]).float()
        row = {"case": case, "solver": name, "run_ms": run_s * 1e3,
               "f_calls": calls.get(name, calls.get("*")),
               "max_rel_diff": float((got - ref).abs().max() / ref.abs().max()),
               "run_ms_rounds": [x * 1e3 for x in timing[name]["rounds"]]}
        if row["f_calls"]:
            row["us_per_nfe"] = run_s / row["f_calls"] * 1e6
        if firsts[name] is not None:
            row["first_s"] = firsts[name]
            row["compile_s"] = firsts[name] - run_s
        rows.append(row)
    return rows


def _calls(f: Callable, runs: List[Tuple[str, Callable]]) -> Dict[str, int]:
    """The batched f calls of the eager rows, counted in a separate pass (the timed runs
    call f itself: a counting wrapper would cost every row its overhead, and a Python
    counter inside a graph recompiles it per call); a compiled solve makes the eager
    solve's calls (test_compiled checks it)."""
    out = {}
    for name, fn in runs:
        if "compiled" not in name:
            counted = Counted(f)
            fn(counted)
            out[name] = counted.calls
    return {name: out.get(name, out["sdeflow eager"]) for name, _ in runs}


def _ode_cases(args: argparse.Namespace, dev: torch.device) -> List[Dict[str, object]]:
    import torchdiffeq
    A = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], device=dev)

    def tiny(t, y):
        return y @ A.T
    y_tiny = torch.tensor([[1.0, 0.0]], device=dev)
    t10 = torch.tensor([0.0, 10.0], device=dev)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(),
                              torch.nn.Linear(128, 64)).to(dev)

    def mlp(t, y):
        return net(y)
    y_mlp = torch.randn(1024, 64, device=dev)
    t1 = torch.tensor([0.0, 1.0], device=dev)
    co = CompileOptions()
    cases = {
        "tiny rk4": (tiny, [
            ("sdeflow eager", lambda f: solve_ode(f, y_tiny, t10, method="rk4",
                                                  step_size=0.01)),
            ("sdeflow compiled", lambda f: solve_ode(f, y_tiny, t10, method="rk4",
                                                     step_size=0.01, compile=co)),
            ("torchdiffeq", lambda f: torchdiffeq.odeint(f, y_tiny, t10, method="rk4",
                                                         options={"step_size": 0.01})),
            ("hand-written rk4", lambda f: hand_rk4(f, y_tiny, 0.0, 0.01, 1000)),
        ], 4000, 0.05),
        "tiny dopri5": (tiny, [
            ("sdeflow eager", lambda f: solve_ode(f, y_tiny, t10, rtol=1e-7, atol=1e-9)),
            ("sdeflow compiled", lambda f: solve_ode(f, y_tiny, t10, rtol=1e-7, atol=1e-9,
                                                     compile=co)),
            ("torchdiffeq", lambda f: torchdiffeq.odeint(f, y_tiny, t10, rtol=1e-7,
                                                         atol=1e-9)),
        ], None, 0.05),
        "mlp rk4": (mlp, [
            ("sdeflow eager", lambda f: solve_ode(f, y_mlp, t1, method="rk4", step_size=0.05)),
            ("sdeflow compiled", lambda f: solve_ode(f, y_mlp, t1, method="rk4",
                                                     step_size=0.05, compile=co)),
            ("torchdiffeq", lambda f: torchdiffeq.odeint(f, y_mlp, t1, method="rk4",
                                                         options={"step_size": 0.05})),
            ("hand-written rk4", lambda f: hand_rk4(f, y_mlp, 0.0, 0.05, 20)),
        ], 80, 0.0),
        "mlp dopri5": (mlp, [
            ("sdeflow eager", lambda f: solve_ode(f, y_mlp, t1, rtol=1e-6, atol=1e-6)),
            ("sdeflow compiled", lambda f: solve_ode(f, y_mlp, t1, rtol=1e-6, atol=1e-6,
                                                     compile=co)),
            ("torchdiffeq", lambda f: torchdiffeq.odeint(f, y_mlp, t1, rtol=1e-6, atol=1e-6)),
        ], None, 0.0),
    }
    if dev.type == "cuda":
        gr = CompileOptions(cuda_graphs=True)
        cases["tiny rk4"][1].append(("sdeflow compiled+graphs", lambda f: solve_ode(
            f, y_tiny, t10, method="rk4", step_size=0.01, compile=gr)))
        cases["mlp rk4"][1].append(("sdeflow compiled+graphs", lambda f: solve_ode(
            f, y_mlp, t1, method="rk4", step_size=0.05, compile=gr)))
    rows = []
    for case in tqdm(cases, desc="ODE cases", disable=args.no_progress):
        f, runs, fixed_calls, min_time = cases[case]
        calls = ({name: fixed_calls for name, _ in runs} if fixed_calls is not None else
                 _calls(f, runs))
        timed = [(name, functools.partial(fn, f)) for name, fn in runs]
        rows += measure(case, timed, calls, args.rounds, min_time, "sdeflow eager")
    return rows


def _sde_case(args: argparse.Namespace, dev: torch.device) -> List[Dict[str, object]]:
    sde = OU("diagonal", 16).to(dev)
    y0 = torch.randn(1024, 16, device=dev)
    ts = torch.tensor([0.0, 1.0], device=dev)
    runs: List[Run] = [
        ("sdeflow eager", lambda: sdeint(sde, y0, ts, method="euler", dt=1e-3,
                                         options={"seed": 1})),
        ("sdeflow compiled", lambda: compiled.sdeint(sde, y0, ts, method="euler", dt=1e-3,
                                                     options={"seed": 1})),
        ("raw EM loop", lambda: raw_em(sde, y0, 1e-3, 1000)),
    ]
    if not args.no_torchsde:
        import torchsde
        runs.append(("torchsde", lambda: torchsde.sdeint(sde, y0, ts, method="euler",
                                                         dt=1e-3)))
    return measure("ou em", runs, {"*": 1000}, args.rounds, 0.0, "sdeflow eager")


def _unroll_sweep(args: argparse.Namespace, dev: torch.device) -> List[Dict[str, object]]:
    A = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], device=dev)
    y0 = torch.tensor([[1.0, 0.0]], device=dev)
    t = torch.tensor([0.0, 10.0], device=dev)

    def f(t, y):
        return y @ A.T
    rows = []
    for k in tqdm(args.unroll, desc="unroll sweep", disable=args.no_progress):
        opts = CompileOptions(unroll=k)

        def run(opts=opts):
            return solve_ode(f, y0, t, method="rk4", step_size=0.01, compile=opts)
        first, _ = _first_call(run)
        best = best_of_rounds([("run", run)], args.rounds, min_time=0.05)["run"]["best"]
        rows.append({"case": "unroll", "solver": f"unroll={k}", "unroll": k, "first_s": first,
                     "compile_s": first - best, "run_ms": best * 1e3,
                     "us_per_nfe": best / 4000 * 1e6})
    return rows


def plot(rows: List[Dict[str, object]], path: Path) -> Path:
    """Per case: the run time of each row (compiled rows annotated with their compile
    time); and the unroll sweep's compile and run times."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cases = [c for c in dict.fromkeys(r["case"] for r in rows) if c != "unroll"]
    fig, axes = plt.subplots(1, len(cases) + 1, figsize=(3.6 * (len(cases) + 1), 3.6))
    for ax, case in zip(axes, cases):
        sel = [r for r in rows if r["case"] == case]
        ax.bar(range(len(sel)), [r["run_ms"] for r in sel], color="C0")
        ax.set_xticks(range(len(sel)), [r["solver"] for r in sel], rotation=40, ha="right",
                      fontsize=7)
        ax.set_ylim(bottom=0)
        ax.set_title(case)
        ax.set_ylabel("run time [ms]")
        for i, r in enumerate(sel):
            if "compile_s" in r:
                ax.annotate(f"compile {r['compile_s']:.1f}s", (i, r["run_ms"]), fontsize=6,
                            ha="center", va="bottom")
    sweep = [r for r in rows if r["case"] == "unroll"]
    ax = axes[-1]
    if sweep:
        ks = [r["unroll"] for r in sweep]
        ax.plot(ks, [r["us_per_nfe"] for r in sweep], marker="o", label="run [µs / f call]")
        ax2 = ax.twinx()
        ax2.plot(ks, [r["compile_s"] for r in sweep], marker="s", color="C1",
                 label="compile [s]")
        ax2.set_ylabel("compile time [s]")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("steps per compiled call")
        ax.set_ylabel("µs per f call")
        ax.set_title("tiny rk4: unroll")
        ax.legend(loc="upper left", fontsize=7)
        ax2.legend(loc="upper right", fontsize=7)
    return save_figure(fig, path)


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="results/compiled")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--unroll", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--quick", action="store_true", help="2 rounds, unroll 1 and 8")
    p.add_argument("--warm-cache", action="store_true",
                   help="keep inductor's disk caches (compile times then reuse earlier runs)")
    p.add_argument("--no-torchsde", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.unroll = 2, [1, 8]
    torch.set_num_threads(1)
    if not args.warm_cache:   # no compiled artifact of an earlier process is reused
        import torch._inductor.config as inductor_config
        inductor_config.force_disable_caches = True
    dev = torch.device(args.device)
    torch._dynamo.reset()
    compiled.clear_cache()
    with torch.no_grad():   # inference timings (CUDA graphs replay values only)
        rows = _ode_cases(args, dev) + _sde_case(args, dev) + _unroll_sweep(args, dev)
    cols = ["case", "solver", "run_ms", "f_calls", "us_per_nfe", "first_s", "compile_s",
            "max_rel_diff"]
    out = Path(args.out)
    png = plot(rows, out / "compiled.png")
    title = (f"compiled vs eager vs peers, float32, {torch.get_num_threads()} thread(s), "
             f"device {dev}; best of {args.rounds} interleaved rounds")
    payload = {"config": {"rounds": args.rounds, "device": str(dev), "unroll": args.unroll,
                          "disk_caches": bool(args.warm_cache)},
               "rows": rows, "png": str(png)}
    path = write_results(out, "compiled", payload, {title: markdown_table(rows, cols)})
    print(markdown_table(rows, cols))
    print(f"wrote {path}, {path.with_suffix('.md')} and {png}")
    return payload


if __name__ == "__main__":
    main()
