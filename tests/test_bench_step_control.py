"""benchmarks.step_control and matched_error: the log-log interpolation at matched error,
the level choice, the verdict against the default, the estimator variant, and a tiny run's
JSON + PNG + markdown."""
import json
import math

import pytest
import torch

from benchmarks import step_control as bench
from benchmarks.matched_error import (Reach, calls_at_error, matched_levels, matched_table,
                                      reach, table_rows)
from solvers import TABLEAUS, solve_ode


def test_calls_at_error_is_exact_on_a_power_law():
    # calls = 100 * err^(-1/5) is a straight line in log-log: interpolation reproduces it
    curve = [(100 * e ** -0.2, e) for e in (1e-2, 1e-4, 1e-6, 1e-8)]
    for target in (3e-3, 1e-4, 2e-7):
        assert math.isclose(calls_at_error(curve, target), 100 * target ** -0.2, rel_tol=1e-12)


def test_calls_at_error_never_extrapolates_and_takes_the_first_crossing():
    curve = [(10, 1e-2), (20, 1e-4), (40, 1e-6)]
    assert calls_at_error(curve, 1e-1) is None          # the cheapest point already beats it
    assert calls_at_error(curve, 1e-7) is None          # never reached
    assert calls_at_error(list(reversed(curve)), 1e-3) == pytest.approx(10 * 2 ** 0.5)
    bumpy = [(10, 1e-2), (20, 1e-5), (30, 1e-3), (40, 1e-6)]
    assert calls_at_error(bumpy, 1e-4) < 20              # the first bracket, not the last
    assert calls_at_error([(10, 1e-2), (20, 0.0)], 1e-3) == 20.0
    with pytest.raises(ValueError, match="target"):
        calls_at_error(curve, 0.0)


def test_reach_bounds_the_calls_where_the_cheapest_point_already_beats_the_level():
    curve = [(10, 1e-2), (20, 1e-4), (40, 1e-6)]
    assert reach(curve, 1e-1) == Reach(10.0, bound=True)
    assert reach(curve, 1e-3) == Reach(calls_at_error(curve, 1e-3))
    assert reach(curve, 1e-7) is None
    assert reach([(10, math.nan), (20, 1e-4)], 1e-3) == Reach(20.0, bound=True)


def test_matched_levels_are_the_decades_strictly_inside_the_range_loosest_first():
    assert matched_levels([(1, 3e-2), (2, 5e-6)]) == [1e-2, 1e-3, 1e-4, 1e-5]
    assert matched_levels([(1, 1e-3), (2, 1e-5)]) == [1e-4]
    assert matched_levels([(1, 1e-3)]) == []


def test_matched_table_and_rows_against_the_baseline():
    pts = [{"config": c, "f": k * e ** -0.25, "max_err": e}
           for c, k in (("base", 10.0), ("half", 5.0)) for e in (1e-2, 1e-4, 1e-6)]
    levels, table = matched_table(pts, "f", "base")
    assert levels == [1e-3, 1e-4, 1e-5]
    for lv in levels:
        assert not table["half"][lv].bound
        assert table["half"][lv].calls / table["base"][lv].calls == pytest.approx(0.5)
    rows, cols = table_rows(levels, table, "base")
    assert cols == ["config", "err 1e-03", "err 1e-04", "err 1e-05"]
    assert rows[1]["err 1e-04"] == f"{5 * 1e-4 ** -0.25:.0f} (0.50x)"
    accurate = [{"config": "acc", "f": 20.0, "max_err": 1e-6},
                {"config": "acc", "f": 50.0, "max_err": 1e-9}]
    levels, table = matched_table(pts + accurate, "f", "base")
    rows, _ = table_rows(levels, table, "base")
    ratio = 20 / (10 * 1e-3 ** -0.25)
    assert rows[2]["err 1e-03"] == f"<=20 ({ratio:.2f}x)"


def _tables(ratio_vdp, ratio_mlp, last=None):
    base = {1e-3: Reach(100.0), 1e-4: Reach(200.0)}

    def scaled(r):
        return {lv: Reach(c.calls * r) for lv, c in base.items()}
    mlp = scaled(ratio_mlp)
    if last != "keep":
        mlp[1e-4] = last
    return {"vdp": {bench.DEFAULT: base, "tsit5": scaled(ratio_vdp)},
            "mlp": {bench.DEFAULT: base, "tsit5": mlp}}


@pytest.mark.parametrize("rv, rm, last, fewer, clearly, missing", [
    (0.9, 0.9, "keep", True, True, 0), (0.9, 0.97, "keep", True, False, 0),
    (0.9, 1.01, "keep", False, False, 0), (0.5, 0.5, None, False, False, 1),
    # an upper bound below the default's calls decides; one above it says nothing
    (0.9, 0.9, Reach(150.0, bound=True), True, True, 0),
    (0.9, 0.9, Reach(250.0, bound=True), False, False, 1)])
def test_compare_to_default_needs_fewer_calls_at_every_level_of_every_workload(
        rv, rm, last, fewer, clearly, missing):
    (v,) = bench.compare_to_default(_tables(rv, rm, last))
    assert v["config"] == "tsit5"
    assert (v["fewer_everywhere"], v["clearly_fewer"]) == (fewer, clearly)
    assert v["missing_levels"] == missing


def test_torchdiffeq_bhat_variant_changes_only_the_error_weights():
    tab, ours = bench.td_bhat_dopri5(), TABLEAUS["dopri5"]
    assert tab.b == ours.b and tab.a == ours.a and tab.b_err != ours.b_err
    # b - b_hat with both weight sets consistent (sum 1): the error weights sum to 0
    assert abs(sum(tab.b_err)) < 1e-15
    y0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    f = lambda t, y: torch.stack([y[:, 1], -y[:, 0]], 1)  # noqa: E731
    sol = solve_ode(f, y0, t, method=tab, rtol=1e-8, atol=1e-8)
    exact = torch.tensor([math.cos(2.0), -math.sin(2.0)], dtype=torch.float64)
    assert (sol.ys[-1, 0] - exact).abs().max() < 1e-6   # tol 1e-8 over ~a dozen steps


@pytest.mark.parametrize("per_sample", [False, True])
def test_max_norm_is_accepted_in_both_modes(per_sample):
    norm = bench.error_norm("max", per_sample)
    x = torch.tensor([[1.0, -3.0], [0.5, 2.0]])
    expected = torch.tensor([3.0, 2.0]) if per_sample else torch.tensor(3.0)
    assert torch.equal(norm(x), expected)
    assert bench.error_norm("rms", per_sample) is None


def test_tiny_run_writes_curves_tables_and_png(tmp_path):
    cfgs = ["tsit5", "torchode dopri5 I"]
    payload = bench.main(["--quick", "--workloads", "mlp", "--configs", *cfgs,
                          "--rtols", "1e-3", "1e-5", "1e-7", "--rounds", "0",
                          "--out", str(tmp_path), "--no-progress"])
    on_disk = json.loads((tmp_path / "step_control.json").read_text())
    assert on_disk["fewer_calls_everywhere"] == payload["fewer_calls_everywhere"]
    assert (tmp_path / "step_control.png").stat().st_size > 1000
    assert "interpolated in log-log" in (tmp_path / "step_control.md").read_text()
    assert payload["workloads"]["mlp"]["reference_check"] < 1e-8
    points = payload["points"]["mlp"]
    assert {p["config"] for p in points} == {bench.DEFAULT, *cfgs} and len(points) == 9
    for name in (bench.DEFAULT, *cfgs):
        errs = [p["max_err"] for p in points if p["config"] == name]
        calls = [p["f_calls"] for p in points if p["config"] == name]
        # a tolerance 1e4 tighter costs more calls and gives a smaller error
        assert calls[0] < calls[-1] and errs[-1] < errs[0] / 10


def test_a_failed_solve_is_recorded_and_left_out_of_the_curves(monkeypatch):
    from solvers import SolverError

    def fake_make_run(cfg, w, rtol):
        def run():
            w.f(None, w.y0)
            if cfg.name == "tsit5":
                raise SolverError("max_steps exceeded")
            return w.ref.clone(), 1.0
        return run
    monkeypatch.setattr(bench, "make_run", fake_make_run)
    ref = torch.zeros(2, 3, 1)
    w = bench.Workload("toy", bench.Counted(lambda t, y: y), torch.zeros(3, 1),
                       torch.tensor([0.0, 1.0]), ref, False, 0.0, "toy")
    cfgs = [c for c in bench.CONFIGS if c.name in (bench.DEFAULT, "tsit5")]
    points = bench.sweep_point(cfgs, w, 1e-3, rounds=1)
    by = {p["config"]: p for p in points}
    assert by["tsit5"]["status"] == "failed: max_steps exceeded"
    assert math.isnan(by["tsit5"]["max_err"]) and by["tsit5"]["wall_ms"] is None
    assert by[bench.DEFAULT]["status"] == "ok" and by[bench.DEFAULT]["max_err"] == 0.0
    assert by[bench.DEFAULT]["wall_ms"] > 0 and by[bench.DEFAULT]["f_calls"] == 1
    assert calls_at_error([(by["tsit5"]["f_calls"], by["tsit5"]["max_err"])], 1e-3) is None
