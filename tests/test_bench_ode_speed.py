"""benchmarks.ode_speed / ode_sizes: the harness' pure parts (size grid, the problem's exact
solution, error, interleaved best-of-rounds timing) and a tiny sizes run's JSON + PNG."""
import json

import pytest
import torch

from benchmarks import ode_speed
from benchmarks.common import Counted, best_of_rounds
from benchmarks.ode_sizes import RotatingPairs, max_abs_error, plot_sizes, size_grid


def test_size_grid_skips_above_max_elements_and_says_why():
    run, skipped = size_grid([1, 64, 16384], [2, 1024], max_elements=2 ** 22)
    assert (16384, 1024) not in run and len(run) == 5
    assert skipped == [{"B": 16384, "d": 1024,
                        "reason": "B*d = 16777216 elements > max_elements = 4194304 (run time)"}]


@pytest.mark.parametrize("b, d, match", [([0], [2], "b_sizes"), ([1], [], "d_sizes"),
                                         ([1], [3], "even"), ([True], [2], "b_sizes")])
def test_size_grid_rejects_bad_sizes(b, d, match):
    with pytest.raises(ValueError, match=match):
        size_grid(b, d, 100)


def test_rotating_pairs_exact_solution_solves_the_ode():
    field = RotatingPairs(6, dtype=torch.float64)
    y0 = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.0, 0.7, 1.9], dtype=torch.float64)
    exact = field.exact(y0, t)
    assert torch.equal(exact[0], y0)
    h = 1e-4
    for k in (1, 2):
        plus = field.exact(y0, t[k:k + 1] + h)[0]
        minus = field.exact(y0, t[k:k + 1] - h)[0]
        # central difference: error h^2/6 |y'''| <= h^2/6 (a^2 + w^2)^{3/2} |y| ~ 5e-8 * |y|
        # (w <= 3, |y| <= 4); rounding eps/h ~ 1e-12
        assert torch.allclose((plus - minus) / (2 * h), field(t[k], exact[k]), atol=1e-6)


def test_max_abs_error_value_and_shape_check():
    ref = torch.zeros(2, 3, 4, dtype=torch.float64)
    ys = torch.zeros(2, 3, 4)
    ys[1, 2, 3] = -0.25
    assert max_abs_error(ys, ref) == 0.25
    with pytest.raises(ValueError, match="shape"):
        max_abs_error(ys[0], ref)


def test_best_of_rounds_interleaves_and_keeps_the_minimum():
    order = []
    runs = [("a", lambda: order.append("a")), ("b", lambda: order.append("b"))]
    res = best_of_rounds(runs, rounds=3)
    assert order == ["a", "b"] * 3
    for name in "ab":
        assert len(res[name]["rounds"]) == 3 and res[name]["best"] == min(res[name]["rounds"])
    with pytest.raises(ValueError, match="rounds"):
        best_of_rounds(runs, rounds=0)
    with pytest.raises(ValueError, match="unique"):
        best_of_rounds(runs + runs[:1], rounds=1)


def test_counted_counts_calls():
    f = Counted(lambda t, y: 2 * y)
    assert torch.equal(f(0.0, torch.ones(2)), torch.full((2,), 2.0)) and f.calls == 1


def test_sizes_run_writes_json_png_and_lists_skipped(tmp_path):
    rows = ode_speed.main(["--suites", "sizes", "--sizes-b", "1", "2", "--sizes-d", "2",
                           "--max-elements", "2", "--rounds", "2", "--out", str(tmp_path),
                           "--no-progress"])["sizes"]
    payload = json.loads((tmp_path / "ode_speed.json").read_text())
    assert (tmp_path / "ode_speed_sizes.png").stat().st_size > 1000
    notes = payload["notes"]["sizes"]
    assert [(s["B"], s["d"]) for s in notes["skipped"]] == [(2, 2)]
    assert payload["suites"]["sizes"] == rows
    libs = {(r["method"], r["solver"]) for r in rows}
    assert libs == {("rk4", "sdeflow"), ("rk4", "torchdiffeq (3/8 rule)"),
                    ("dopri5", "sdeflow joint"), ("dopri5", "sdeflow per-sample"),
                    ("dopri5", "torchdiffeq"), ("dopri5", "torchode (per-sample)")}
    for r in rows:
        assert r["B"] == 1 and r["d"] == 2 and len(r["wall_ms_rounds"]) == 2
        assert r["wall_ms"] == min(r["wall_ms_rounds"])
        if r["method"] == "rk4":
            # 100 steps of h=0.02: 4 stages each; global error ~ 100 * (0.06)^5 / 120 = 7e-7
            # plus float32 rounding ~ 100 * 6e-8: below 1e-5
            assert r["f_calls"] == 400 and r["max_err_vs_exact"] < 1e-5
        else:
            assert r["max_err_vs_exact"] < 1e-3       # tol 1e-5, a 2-d problem on [0, 2]


def test_plot_sizes_draws_one_panel_per_method_and_d(tmp_path):
    rows = [{"method": m, "d": d, "B": b, "solver": lib, "wall_ms": 1.0 + b}
            for m in ("rk4", "dopri5") for d in (2, 64) for b in (1, 64) for lib in ("x", "y")]
    path = plot_sizes(rows, tmp_path / "p.png")
    assert path.stat().st_size > 1000
