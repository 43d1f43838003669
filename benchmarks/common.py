"""Shared helpers for the benchmark suites: timing, environment record, JSON + markdown output."""
from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

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
