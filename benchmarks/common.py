"""Shared helpers for the benchmark suites: timing, environment record, JSON + markdown output."""
from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import torch


def time_call(fn: Callable[[], object], repeat: int = 5, warmup: int = 1,
              min_time: float = 0.0) -> Dict[str, float]:
    """Wall-clock seconds of ``fn()``: median and min over ``repeat`` runs after ``warmup``.

    With ``min_time`` > 0, each run loops ``fn`` until that many seconds passed and reports
    the per-call time (for very fast functions).
    """
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        samples.append(elapsed / n)
    return {"median": statistics.median(samples), "min": min(samples), "runs": samples}


def environment() -> Dict[str, object]:
    """What the numbers were measured on."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def markdown_table(rows: Sequence[Dict[str, object]], columns: Sequence[str]) -> str:
    """Render ``rows`` (dicts) as a markdown table with the given column order."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def write_results(out_dir: str | Path, name: str, payload: Dict[str, object],
                  tables: Dict[str, str]) -> Path:
    """Atomically write ``name.json`` (payload + environment) and ``name.md`` (tables)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"environment": environment(), **payload}
    _atomic_write(out / f"{name}.json", json.dumps(payload, indent=2, default=float))
    md = "\n\n".join(f"### {title}\n\n{table}" for title, table in tables.items()) + "\n"
    _atomic_write(out / f"{name}.md", md)
    return out / f"{name}.json"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def run_suites(name: str, suites: Dict[str, Callable[[int], List[Dict[str, object]]]],
               selected: Sequence[str], titles: Dict[str, str],
               columns: Dict[str, Sequence[str]], repeat: int, out_dir: str | Path
               ) -> Dict[str, List[Dict[str, object]]]:
    """Run the selected suites, print each table with its run time, write JSON + markdown."""
    results, tables = {}, {}
    for suite in selected:
        start = time.perf_counter()
        print(f"[{name}] running suite {suite!r} ...", flush=True)
        rows = suites[suite](repeat)
        results[suite] = rows
        tables[titles[suite]] = markdown_table(rows, columns[suite])
        print(tables[titles[suite]], f"\n({time.perf_counter() - start:.1f} s)\n", flush=True)
    path = write_results(out_dir, name, {"suites": results}, tables)
    print(f"[{name}] wrote {path} and {path.with_suffix('.md')}")
    return results


def rows_to_list(rows: List[Dict[str, object]]) -> List[Dict[str, object]]:
    """JSON-friendly copy of result rows (tensors become floats)."""
    return [{k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in r.items()}
            for r in rows]


class Counted(torch.nn.Module):
    """Wraps a vector field ``f(t, y)`` and counts its (batched) calls; the same wrapper for
    every library, so f-call counts compare."""

    def __init__(self, f: Callable) -> None:
        super().__init__()
        self.f = f
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.f(t, y)


def best_of_rounds(runs: Sequence[Tuple[str, Callable[[], object]]], rounds: int,
                   min_time: float = 0.0) -> Dict[str, Dict[str, object]]:
    """Seconds per call of each named run, the runs interleaved within each of ``rounds``
    rounds (so a burst of other load on the machine hits all of them, and ratios within a
    round stay comparable). Returns ``{name: {"best": min over rounds, "rounds": [...]}}``;
    ``min_time`` as in `time_call` (loop very fast runs)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"best_of_rounds: `rounds` must be an integer >= 1; got {rounds!r}")
    names = [name for name, _ in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"best_of_rounds: run names must be unique; got {names}")
    times: Dict[str, List[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name, fn in runs:
            times[name].append(time_call(fn, repeat=1, warmup=0, min_time=min_time)["min"])
    return {name: {"best": min(ts), "rounds": ts} for name, ts in times.items()}


def save_figure(fig, path: Path) -> Path:
    """Lay out, write (110 dpi, folders made) and close a matplotlib figure."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def size_panel(ax, rows: Sequence[Dict[str, object]], y_key: str, title: str,
               ylabel: str) -> None:
    """One panel of a size sweep: ``y_key`` against the batch size B, a log-log line per
    library (``solver``); a panel with no rows says it was not run."""
    for lib in dict.fromkeys(r["solver"] for r in rows):
        pts = sorted((r["B"], r[y_key]) for r in rows if r["solver"] == lib)
        ax.plot(*zip(*pts), marker="o", label=lib)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("batch size B")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if rows:
        ax.legend(fontsize=7)
    else:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "not run (skipped: see the JSON)", ha="center",
                transform=ax.transAxes)
