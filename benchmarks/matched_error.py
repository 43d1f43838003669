"""Matched-error comparison of error-vs-cost curves: the cost a configuration needs to reach
a given error, interpolated along its sweep (used by `benchmarks.step_control`).

A curve is a list of (cost, error) points, one per tolerance of a sweep.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

Curve = Sequence[Tuple[float, float]]


def calls_at_error(points: Curve, target: float) -> Optional[float]:
    """Calls needed to reach error ``target`` along one curve of (calls, error) points.

    Points are taken in increasing calls; the first one with error <= target and its
    predecessor bracket the level, and log(calls) is interpolated linearly in log(error)
    between them. None when no point reaches the target or the cheapest point already
    does (no extrapolation either way).
    """
    if not target > 0:
        raise ValueError(f"calls_at_error: `target` must be a positive error; got {target!r}")
    pts = sorted((c, e) for c, e in points if c > 0 and math.isfinite(e))
    if not pts or pts[0][1] <= target:
        return None
    for (c0, e0), (c1, e1) in zip(pts, pts[1:]):
        if e1 <= target:
            if e1 <= 0:                     # exact to rounding: the bracket's upper end
                return float(c1)
            frac = (math.log(target) - math.log(e0)) / (math.log(e1) - math.log(e0))
            return math.exp(math.log(c0) + frac * (math.log(c1) - math.log(c0)))
    return None


@dataclass(frozen=True)
class Reach:
    """The calls a curve needs to reach an error level: interpolated (``bound`` False) or,
    when the curve's cheapest point already reaches the level, at most ``calls`` (``bound``
    True: the cheapest point's calls, an upper bound)."""

    calls: float
    bound: bool = False


def reach(points: Curve, target: float) -> Optional[Reach]:
    """`calls_at_error` where the level is bracketed, the upper bound where the cheapest
    point already reaches it, None where no point does."""
    calls = calls_at_error(points, target)
    if calls is not None:
        return Reach(calls)
    met = [c for c, e in points if c > 0 and math.isfinite(e) and e <= target]
    return Reach(float(min(met)), bound=True) if met else None


def matched_levels(points: Curve, per_decade: int = 1) -> List[float]:
    """Error levels (powers of ten, loosest first) strictly inside the error range of a
    curve."""
    errs = [e for _, e in points if e > 0 and math.isfinite(e)]
    if len(errs) < 2:
        return []
    lo, hi = math.log10(min(errs)), math.log10(max(errs))
    ks = range(math.ceil(hi * per_decade) - 1, math.floor(lo * per_decade), -1)
    return [10.0 ** (k / per_decade) for k in ks]


def curves(points: Sequence[Dict[str, object]], metric: str) -> Dict[str, List[Tuple]]:
    """Per configuration (``point["config"]``), its (``point[metric]``, ``max_err``) points."""
    out: Dict[str, List[Tuple]] = {}
    for p in points:
        out.setdefault(p["config"], []).append((p[metric], p["max_err"]))
    return out


Table = Dict[str, Dict[float, Optional[Reach]]]


def matched_table(points: Sequence[Dict[str, object]], metric: str, baseline: str
                  ) -> Tuple[List[float], Table]:
    """Levels (inside the ``baseline`` configuration's error range, loosest first) and, per
    configuration, its `reach` of each level."""
    by_cfg = curves(points, metric)
    levels = matched_levels(by_cfg[baseline])
    return levels, {name: {lv: reach(c, lv) for lv in levels} for name, c in by_cfg.items()}


def table_rows(levels: Sequence[float], table: Table, baseline: str
               ) -> Tuple[List[Dict[str, object]], List[str]]:
    """Markdown rows and columns: the cost at each level ("<=" for an upper bound) and its
    ratio to the baseline's."""
    cols = [f"err {lv:.0e}" for lv in levels]
    rows = []
    for name, at in table.items():
        row: Dict[str, object] = {"config": name}
        for lv, col in zip(levels, cols):
            mine, base = at[lv], table[baseline][lv]
            if mine is None:
                row[col] = "-"
                continue
            ratio = f" ({mine.calls / base.calls:.2f}x)" if base and not base.bound else ""
            row[col] = ("<=" if mine.bound else "") + f"{mine.calls:.0f}" + ratio
        rows.append(row)
    return rows, ["config"] + cols
