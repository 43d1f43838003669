"""No-regression check: an old commit against a new one, measured in the same run.

Both commits are exported (``git archive``) into a temporary directory and every benchmark
runs from each tree with this interpreter: benchmarks/ode_speed.py, sde_speed.py,
adjoint_memory.py, and a probe that records the statistics (NFE, steps) and results of a
fixed set of solves through the public API (ODE methods in joint / per-sample / dense /
compact / checkpoint / backsolve modes, every SDE method on fixed and adaptive grids,
both adjoints). Rounds alternate the order (old, new), (new, old), ...; a row's time is
its best over the rounds (the least disturbed by other load on the machine).

Reports per row: old and new time, ratio new/old, the counts (f calls, NFE) of both and
whether they are identical; for the probe, identical statistics and the largest result
difference. Writes ``compare_commits.json`` and ``compare_commits.md`` into ``--out``.

Usage: python -m benchmarks.compare_commits OLD [NEW] [--out results/compare_commits]
       [--rounds 2] [--quick] [--benches ode_speed sde_speed adjoint_memory probe]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent

# benchmark -> (module, quick arguments, full arguments)
BENCHES: Dict[str, Tuple[str, List[str], List[str]]] = {
    # the suites both old and new trees have (the sizes sweep is its own benchmark)
    "ode_speed": ("benchmarks.ode_speed", ["--repeat", "3", "--suites", "tiny", "mlp", "vdp"],
                  ["--repeat", "5", "--suites", "tiny", "mlp", "vdp", "events"]),
    "sde_speed": ("benchmarks.sde_speed", ["--repeat", "3", "--steps", "500"], ["--repeat", "5"]),
    "adjoint_memory": ("benchmarks.adjoint_memory", ["--repeat", "3", "--steps", "100"],
                       ["--repeat", "3"]),
}

PROBE = r'''
import json, sys
import torch
from solvers import (SDE_METHODS, TABLEAUS, odeint_adjoint, sdeint_adjoint, solve_ode,
                     solve_sde)

torch.manual_seed(0)
F = torch.float64
A = torch.tensor([[-0.5, 2.0, 0.0], [-2.0, -0.5, 0.5], [0.0, -0.5, -1.0]], dtype=F)
y0 = torch.randn(16, 3, dtype=F)
t = torch.linspace(0, 2, 7, dtype=F)
stats, values = {}, {}


def f(t, y):
    return torch.tanh(y @ A.T) + 0.1 * torch.sin(t)[..., None]


def record(name, ys, st):
    stats[name] = {k: (int(v.sum()) if isinstance(v, torch.Tensor) else int(v))
                   for k, v in st.items()}
    values[name] = ys.detach().clone()


for m, tab in TABLEAUS.items():
    kw = {} if tab.adaptive else {"step_size": 0.05}
    for per_sample in (False, True):
        sol = solve_ode(f, y0, t, method=m, rtol=1e-6, atol=1e-8, per_sample=per_sample,
                        dense=True, **kw)
        record(f"ode {m} per_sample={per_sample}", sol.evaluate(torch.linspace(0, 2, 23,
               dtype=F)), sol.stats)
    sol = solve_ode(f, y0, t, method=m, rtol=1e-6, atol=1e-8, **kw)
    record(f"ode {m} outputs", sol.ys, sol.stats)
sol = solve_ode(f, y0, t, rtol=1e-6, atol=1e-8, per_sample=True, compact=True)
record("ode dopri5 compact", sol.ys, sol.stats)
for gradient in ("checkpoint", "backsolve"):
    y = y0.clone().requires_grad_(True)
    sol = solve_ode(f, y, t, rtol=1e-6, atol=1e-8, gradient=gradient)
    (g,) = torch.autograd.grad(sol.ys.square().sum(), y)
    record(f"ode dopri5 {gradient} grad", g, sol.stats)
y = y0.clone().requires_grad_(True)
(g,) = torch.autograd.grad(odeint_adjoint(f, y, t, rtol=1e-6, atol=1e-8).sum(), y)
record("odeint_adjoint grad", g, {})


class SDE(torch.nn.Module):
    def __init__(self, sde_type):
        super().__init__()
        self.noise_type, self.sde_type = "diagonal", sde_type
        self.a = torch.nn.Parameter(torch.tensor(0.7, dtype=F))

    def f(self, t, y):
        return self.a * torch.sin(y) - 0.3 * y

    def g(self, t, y):
        return 0.5 * torch.cos(y) + 0.1


ts = torch.tensor([0.0, 0.5, 1.0], dtype=F)
for m, meth in SDE_METHODS.items():
    sde = SDE(meth.sde_types[0])
    sol = solve_sde(sde, y0, ts, method=m, dt=0.01, options={"seed": 1})
    record(f"sde {m}", sol.ys, sol.stats)
    if not meth.has_extra:
        sol = solve_sde(sde, y0, ts, method=m, dt=0.01, adaptive=True, options={"seed": 1})
        record(f"sde {m} adaptive", sol.ys, sol.stats)
    y = y0.clone().requires_grad_(True)
    ys = sdeint_adjoint(sde, y, ts, method=m, dt=0.01, options={"seed": 1})
    grads = torch.autograd.grad(ys.square().sum(), [y, sde.a])
    record(f"sde {m} adjoint grad", torch.cat([g.reshape(-1) for g in grads]), {})
torch.save(values, sys.argv[1] + ".pt")
json.dump(stats, open(sys.argv[1] + ".json", "w"))
'''


def export(commit: str, dest: Path) -> str:
    """Extract ``commit``'s tree into ``dest``; returns the full hash."""
    full = subprocess.run(["git", "rev-parse", commit], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", full], cwd=REPO, check=True,
                             capture_output=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return full


def _run(cmd: List[str], tree: Path) -> None:
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed in {tree}:\n{proc.stderr[-3000:]}")


def run_bench(tree: Path, bench: str, out: Path, quick: bool) -> Dict:
    """Run one benchmark from ``tree`` (its own ``solvers``); returns its JSON payload."""
    if bench == "probe":
        _run([sys.executable, "-c", PROBE, str(out)], tree)
        return json.loads(Path(f"{out}.json").read_text())
    module, quick_args, full_args = BENCHES[bench]
    _run([sys.executable, "-m", module, "--out", str(out),
          *(quick_args if quick else full_args)], tree)
    return json.loads((out / f"{bench}.json").read_text())


def rows_of(bench: str, payload: Dict) -> Dict[str, Dict[str, float]]:
    """Benchmark rows as ``{row key: {"time": seconds, "counts": {...}}}``."""
    out: Dict[str, Dict] = {}
    if bench == "ode_speed":
        for suite, rows in payload["suites"].items():
            for r in rows:
                key = " / ".join(str(x) for x in (suite, r.get("case"), r["solver"]) if x)
                counts = {k: r[k] for k in ("f_calls", "mean_nfe_per_row") if k in r}
                out[key] = {"time": r["wall_ms"] / 1e3, "counts": counts}
    elif bench == "sde_speed":
        for r in payload["rows"]:
            out[f"{r['solver']} / {r['noise']}"] = {"time": r["min_s"], "counts": {}}
    elif bench == "adjoint_memory":
        for r in payload["rows"]:
            if r.get("status") == "ok":
                counts = {k: r[k] for k in ("f_calls_forward", "f_calls_backward")}
                out[f"{r['config']} / {r['steps']} steps"] = {
                    "time": r["wall_s"], "counts": counts, "peak_mb": r["peak_mb"]}
    return out


def best_of(runs: List[Dict[str, Dict]]) -> Dict[str, Dict]:
    """Per row: the smallest time over the rounds; counts must agree between rounds."""
    best: Dict[str, Dict] = {}
    for rows in runs:
        for key, r in rows.items():
            if key not in best or r["time"] < best[key]["time"]:
                best[key] = dict(r, counts_stable=best.get(key, r)["counts"] == r["counts"])
    return best


def compare_rows(old: Dict[str, Dict], new: Dict[str, Dict]) -> List[Dict]:
    """Per row: times, ratio new/old, and that ratio over the median ratio of the peer rows
    (torchdiffeq, torchode, torchsde, the raw loop), which run in the same processes and so
    see the same machine load."""
    rows = []
    for key in old:
        if key not in new:
            continue
        o, n = old[key], new[key]
        rows.append({"row": key, "old_s": o["time"], "new_s": n["time"],
                     "ratio": n["time"] / o["time"], "counts_old": o["counts"],
                     "counts_new": n["counts"], "counts_equal": o["counts"] == n["counts"],
                     **({"peak_ratio": n["peak_mb"] / o["peak_mb"]} if "peak_mb" in o else {})})
    peers = sorted(r["ratio"] for r in rows if "sdeflow" not in r["row"])
    drift = peers[len(peers) // 2] if peers else 1.0
    for r in rows:
        r["peer_drift"] = drift
        r["ratio_vs_peers"] = r["ratio"] / drift
    return rows


def compare_probe(tmp: Path, old: Dict, new: Dict) -> List[Dict]:
    import torch
    vo = torch.load(tmp / "old_probe.pt", weights_only=True)
    vn = torch.load(tmp / "new_probe.pt", weights_only=True)
    rows = []
    for key in old:
        a, b = vo[key], vn.get(key)
        diff = float((a - b).abs().max()) if b is not None else float("nan")
        common = {k: v for k, v in (new.get(key) or {}).items() if k in old[key]}
        rows.append({"row": key, "stats_old": old[key], "stats_new": new.get(key),
                     "stats_equal": old[key] == common,  # on the old commit's keys
                     "bit_identical": b is not None and bool(torch.equal(a, b)),
                     "max_abs_diff": diff})
    return rows


def markdown(bench: str, rows: List[Dict]) -> str:
    if bench == "probe":
        lines = ["| solve | stats equal (old keys) | bit-identical | max abs diff |",
                 "|---|---|---|---|"]
        lines += [f"| {r['row']} | {r['stats_equal']} | {r['bit_identical']} | "
                  f"{r['max_abs_diff']:.1e} |" for r in rows]
        return "\n".join(lines)
    lines = ["| row | old s | new s | new/old | new/old over peers' | counts | equal |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        counts = ", ".join(f"{k}={v:g}" for k, v in r["counts_old"].items()) or "-"
        lines.append(f"| {r['row']} | {r['old_s']:.4g} | {r['new_s']:.4g} | "
                     f"{r['ratio']:.3f} | {r['ratio_vs_peers']:.3f} | {counts} | "
                     f"{r['counts_equal']} |")
    return "\n".join(lines)


def main(argv=None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new", nargs="?", default="HEAD")
    p.add_argument("--out", default="results/compare_commits")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="fewer repeats and steps")
    p.add_argument("--benches", nargs="+", default=[*BENCHES, "probe"],
                   choices=[*BENCHES, "probe"])
    args = p.parse_args(argv)
    results: Dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        trees = {label: tmp / label for label in ("old", "new")}
        commits = {label: export(c, trees[label])
                   for label, c in (("old", args.old), ("new", args.new))}
        results["commits"] = commits
        for bench in args.benches:
            runs: Dict[str, List] = {"old": [], "new": []}
            rounds = 1 if bench == "probe" else args.rounds
            for r in range(rounds):
                for label in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    out = tmp / f"{label}_{bench}" if bench == "probe" else \
                        tmp / f"{label}_{bench}_{r}"
                    print(f"[compare] {bench} round {r + 1}/{rounds}: {label}", flush=True)
                    runs[label].append(run_bench(trees[label], bench, out, args.quick))
            if bench == "probe":
                results[bench] = compare_probe(tmp, runs["old"][0], runs["new"][0])
            else:
                results[bench] = compare_rows(
                    best_of([rows_of(bench, x) for x in runs["old"]]),
                    best_of([rows_of(bench, x) for x in runs["new"]]))
    write(Path(args.out), results, args)
    return results


def write(out: Path, results: Dict, args: argparse.Namespace) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare_commits.json").write_text(json.dumps(results, indent=2))
    head = (f"old {results['commits']['old'][:10]} vs new {results['commits']['new'][:10]}; "
            f"best of {args.rounds} alternating rounds{' (quick)' if args.quick else ''}")
    parts = [f"# Commit comparison\n\n{head}"]
    parts += [f"## {b}\n\n{markdown(b, results[b])}" for b in args.benches]
    text = "\n\n".join(parts) + "\n"
    (out / "compare_commits.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
