"""Memory and time of differentiating through an ODE solve: sdeflow (direct, checkpoint,
backsolve) vs torchdiffeq (odeint, odeint_adjoint), measured in the same run (issue 4).

Problem: neural ODE f(t, y) = Linear(256, 32)(tanh(Linear(32, 256)(y))), B=512, y0 ~ N(0, 1),
rk4 with step_size 1/n on t in [0, 1], n in {100, 1000}; loss = sum of the final state; one
backward (gradients w.r.t. y0 and the 16.7k parameters).

Every configuration runs in its own process (``--child CONFIG --steps N``), so the peak
memory is the process's own, read from the OS: ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
(peak resident set size). The child also reports the peak after imports, model creation and
a warm-up solve on a tiny problem (the baseline), so the increment due to the solve is
visible. Memory is the peak after the first full-size forward+backward; wall time is the
median over ``--repeat`` full-size forward+backward runs (the first included). Each child's
gradients are compared with sdeflow direct at the same n (max |g - g_ref| / max |g_ref| over
y0 and all parameters), and calls of f are counted in the forward and backward passes.
``live_after_fwd_MB`` is the memory malloc has handed out and not got back after the
forward pass, minus the same at the baseline (glibc ``mallinfo2``): what autograd keeps for
the backward pass. It separates the libraries' storage from glibc's heap fragmentation,
which inflates RSS (e.g. 64 KB per-step tensors interleaved with freed temporaries).
A configuration whose peak, extrapolated from its run at fewer steps, would exceed 6 GB is
skipped (and says so in the table).

Usage: python -m benchmarks.adjoint_memory [--out results/adjoint_memory] [--threads 1]
       [--repeat 3] [--steps 100 1000]
Writes adjoint_memory.json and adjoint_memory.md into --out and prints the tables.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

D, HIDDEN, BATCH = 32, 256, 512
CONFIGS = ("sdeflow direct", "sdeflow checkpoint", "sdeflow backsolve", "torchdiffeq odeint",
           "torchdiffeq odeint_adjoint")
SLUG = {c: c.replace(" ", "_") for c in CONFIGS}
MEMORY_CAP_MB = 6000.0  # skip a configuration whose estimated peak exceeds this


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _current_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _live_heap_mb() -> Optional[float]:
    """Bytes currently allocated through malloc (glibc ``mallinfo2``: in-use heap chunks +
    mmapped chunks): live memory without the allocator's free-but-resident pages."""
    try:
        import ctypes

        class _MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost")]
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
        return (info.uordblks + info.hblkhd) / 2 ** 20
    except (OSError, AttributeError):
        return None


# --------------------------------------------------------------------------- child

def run_child(config: str, steps: int, threads: int, repeat: int, grad_dir: str) -> Dict:
    import torch
    import torchdiffeq
    from torch import nn

    from solvers import odeint_adjoint, solve_ode

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class Field(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(D, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, D))
            self.calls = 0

        def forward(self, t, y):
            self.calls += 1
            return self.net(y)

    field = Field()
    t = torch.tensor([0.0, 1.0])

    def forward(y0, h):
        if config == "sdeflow direct":
            return solve_ode(field, y0, t, method="rk4", step_size=h, gradient="direct").ys
        if config == "sdeflow checkpoint":
            return solve_ode(field, y0, t, method="rk4", step_size=h, gradient="checkpoint").ys
        if config == "sdeflow backsolve":
            return odeint_adjoint(field, y0, t, method="rk4", options={"step_size": h})
        if config == "torchdiffeq odeint":
            return torchdiffeq.odeint(field, y0, t, method="rk4", options={"step_size": h})
        if config == "torchdiffeq odeint_adjoint":
            return torchdiffeq.odeint_adjoint(field, y0, t, method="rk4",
                                              options={"step_size": h})
        raise ValueError(f"unknown configuration {config!r}; choose from {CONFIGS}")

    calls = {}

    def run(y0, h):
        y0.grad = None
        field.zero_grad(set_to_none=True)
        field.calls = 0
        ys = forward(y0, h)
        loss = ys[-1].sum()
        calls["forward"] = field.calls
        calls["live_mb"] = _live_heap_mb()
        field.calls = 0
        loss.backward()
        calls["backward"] = field.calls
        return float(loss.detach())

    # Warm-up on a tiny problem (B=2, 2 steps) so that lazy imports and one-time
    # initialisation of the code path (e.g. torch.utils.checkpoint's first call imports
    # torch._dynamo: ~3 s and ~85 MB) count in the baseline, not in the solve.
    run(torch.randn(2, D).requires_grad_(True), 0.5)
    y0 = torch.randn(BATCH, D).requires_grad_(True)
    h = 1.0 / steps
    baseline_peak, baseline_cur, baseline_live = _peak_mb(), _current_mb(), _live_heap_mb()

    walls = []
    start = time.perf_counter()
    loss = run(y0, h)
    walls.append(time.perf_counter() - start)
    peak = _peak_mb()
    live_fwd = (None if baseline_live is None or calls["live_mb"] is None
                else calls["live_mb"] - baseline_live)
    grads = torch.cat([y0.grad.reshape(-1)] + [p.grad.reshape(-1) for p in field.parameters()])
    for _ in range(repeat - 1):
        start = time.perf_counter()
        run(y0, h)
        walls.append(time.perf_counter() - start)
    torch.save(grads, Path(grad_dir) / f"{SLUG[config]}_{steps}.pt")
    walls_sorted = sorted(walls)
    return {"config": config, "steps": steps, "threads": threads,
            "baseline_peak_mb": baseline_peak, "baseline_current_mb": baseline_cur,
            "peak_mb": peak, "increment_mb": peak - baseline_peak,
            "live_after_forward_mb": live_fwd,
            "wall_s": walls_sorted[len(walls) // 2], "wall_runs_s": walls,
            "f_calls_forward": calls["forward"], "f_calls_backward": calls["backward"],
            "loss": loss}


# --------------------------------------------------------------------------- parent

def _spawn(config: str, steps: int, threads: int, repeat: int, grad_dir: str,
           timeout: float) -> Dict:
    cmd = [sys.executable, "-m", "benchmarks.adjoint_memory", "--child", config,
           "--steps", str(steps), "--threads", str(threads), "--repeat", str(repeat),
           "--grad-dir", grad_dir]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=Path(__file__).resolve().parent.parent)
    except subprocess.TimeoutExpired:
        return {"config": config, "steps": steps, "status": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"config": config, "steps": steps,
                "status": f"failed (exit {proc.returncode}): {' | '.join(tail)}"}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["status"] = "ok"
    return row


def _grad_rel_diff(grad_dir: str, config: str, steps: int) -> Optional[float]:
    import torch
    ref = Path(grad_dir) / f"{SLUG['sdeflow direct']}_{steps}.pt"
    got = Path(grad_dir) / f"{SLUG[config]}_{steps}.pt"
    if not (ref.exists() and got.exists()):
        return None
    g, r = torch.load(got, weights_only=True), torch.load(ref, weights_only=True)
    return float((g - r).abs().max() / r.abs().max())


def _targets(rows: List[Dict]) -> List[Dict]:
    by = {(r["config"], r["steps"]): r for r in rows if r.get("status") == "ok"}

    def get(config, steps, key):
        r = by.get((config, steps))
        return None if r is None else r[key]

    out = []

    def check(name, value, limit, note=""):
        if value is None:
            out.append({"target": name, "measured": "n/a", "limit": limit, "met": "n/a",
                        "note": note})
        else:
            out.append({"target": name, "measured": round(value, 3), "limit": limit,
                        "met": "yes" if value <= limit else "NO", "note": note})

    bs100, bs1000 = (get("sdeflow backsolve", n, "peak_mb") for n in (100, 1000))
    check("backsolve peak(1000) / peak(100)",
          bs1000 / bs100 if bs100 and bs1000 else None, 1.1)
    for n in (100, 1000):
        tdq = get("torchdiffeq odeint_adjoint", n, "peak_mb")
        bs = get("sdeflow backsolve", n, "peak_mb")
        check(f"backsolve peak / torchdiffeq adjoint peak ({n} steps)",
              bs / tdq if bs and tdq else None, 1.0)
        tdq_t = get("torchdiffeq odeint_adjoint", n, "wall_s")
        bs_t = get("sdeflow backsolve", n, "wall_s")
        check(f"backsolve time / torchdiffeq adjoint time ({n} steps)",
              bs_t / tdq_t if bs_t and tdq_t else None, 1.0)
        ck = get("sdeflow checkpoint", n, "increment_mb")
        dr = get("sdeflow direct", n, "increment_mb")
        check(f"checkpoint increment / direct increment ({n} steps)",
              ck / dr if ck and dr else None, 0.5, "'well below': asserted <= 0.5")
    return out


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/adjoint_memory")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--steps", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS,
                   metavar="CONFIG")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per child")
    p.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    p.add_argument("--grad-dir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child is not None:
        grad_dir = args.grad_dir or tempfile.mkdtemp()
        row = run_child(args.child, args.steps[0], args.threads, args.repeat, grad_dir)
        print(json.dumps(row))
        return

    import torch

    from benchmarks.common import markdown_table, write_results
    torch.set_num_threads(args.threads)  # so the recorded environment states it

    rows: List[Dict] = []
    with tempfile.TemporaryDirectory() as grad_dir:
        for steps in sorted(args.steps):
            for config in args.configs:
                # skip a configuration whose peak, extrapolated linearly in the number of
                # steps from the largest measured smaller run, would exceed MEMORY_CAP_MB
                prev = [r for r in rows if r["config"] == config and r.get("status") == "ok"]
                if prev:
                    last = max(prev, key=lambda r: r["steps"])
                    est = last["baseline_peak_mb"] + last["increment_mb"] * steps / last["steps"]
                    if est > MEMORY_CAP_MB:
                        rows.append({"config": config, "steps": steps,
                                     "status": f"skipped: estimated peak {est:.0f} MB > "
                                               f"{MEMORY_CAP_MB:.0f} MB"})
                        print(f"[{steps:5d} steps] {config:28s} {rows[-1]['status']}",
                              flush=True)
                        continue
                row = _spawn(config, steps, args.threads, args.repeat, grad_dir, args.timeout)
                if row["status"] == "ok":
                    row["grad_rel_diff_vs_direct"] = _grad_rel_diff(grad_dir, config, steps)
                    print(f"[{steps:5d} steps] {config:28s} peak {row['peak_mb']:8.1f} MB "
                          f"(+{row['increment_mb']:7.1f}) wall {row['wall_s']:7.3f} s",
                          flush=True)
                else:
                    print(f"[{steps:5d} steps] {config:28s} {row['status']}", flush=True)
                rows.append(row)

    table_rows = []
    for r in rows:
        t = {"steps": r["steps"], "configuration": r["config"], "status": r["status"]}
        if r["status"] == "ok":
            diff = r.get("grad_rel_diff_vs_direct")
            t.update({"peak_MB": r["peak_mb"], "baseline_MB": r["baseline_peak_mb"],
                      "increment_MB": r["increment_mb"],
                      "live_after_fwd_MB": r["live_after_forward_mb"], "wall_s": r["wall_s"],
                      "f_calls fwd/bwd": f"{r['f_calls_forward']}/{r['f_calls_backward']}",
                      "grad rel diff vs sdeflow direct": "-" if diff is None else f"{diff:.1e}"})
        table_rows.append(t)
    columns = ["steps", "configuration", "peak_MB", "baseline_MB", "increment_MB",
               "live_after_fwd_MB", "wall_s",
               "f_calls fwd/bwd", "grad rel diff vs sdeflow direct", "status"]
    targets = _targets(rows)
    title = (f"Neural ODE d={D}, hidden={HIDDEN}, B={BATCH}, rk4, t in [0, 1], step 1/n; "
             f"loss = sum(y(1)); one backward; float32; torch threads = {args.threads}; "
             f"peak = ru_maxrss of the child process after the first forward+backward; "
             f"live_after_fwd = malloc'd bytes held after the forward pass (glibc mallinfo2), "
             f"i.e. what autograd keeps for backward, without allocator fragmentation; "
             f"wall = median of {args.repeat} forward+backward runs")
    tables = {title: markdown_table(table_rows, columns),
              "Targets (issue 4)": markdown_table(targets, ["target", "measured", "limit",
                                                            "met", "note"])}
    payload = {"problem": {"d": D, "hidden": HIDDEN, "batch": BATCH, "method": "rk4",
                           "t": [0.0, 1.0], "dtype": "float32", "threads": args.threads,
                           "repeat": args.repeat, "memory_cap_mb": MEMORY_CAP_MB},
               "rows": rows, "targets": targets}
    write_results(args.out, "adjoint_memory", payload, tables)
    for name, table in tables.items():
        print(f"\n### {name}\n\n{table}")


if __name__ == "__main__":
    main()
