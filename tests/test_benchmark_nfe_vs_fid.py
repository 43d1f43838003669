"""benchmarks.nfe_vs_fid: a tiny end-to-end run (oracle + digits with the no-training
Gaussian-fit score), the JSON / PNG / markdown outputs, and the target-check logic."""
import json

import pytest

from benchmarks import nfe_vs_fid as bench


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nfe_vs_fid")
    args = ["--out", str(out), "--quick", "--model", "gaussian", "--no-progress",
            "--budgets", "5", "60", "--n", "64", "--n-boot", "5", "--oracle-n", "64",
            "--ref-pc-steps", "30"]
    state = bench.main(args)
    return out, state


def test_tiny_run_writes_json_png_and_markdown(tiny_run, capsys):
    out, state = tiny_run
    payload = json.loads((out / "nfe_vs_fid.json").read_text())
    assert payload["complete"] is True
    assert (out / "nfe_vs_fid.png").stat().st_size > 1000
    assert (out / "nfe_vs_fid.md").read_text().startswith("### ")
    assert {"environment", "config", "oracle", "digits", "target", "wall_seconds"} <= set(payload)
    assert payload["config"]["budgets"] == [5, 60]
    d, o = payload["digits"], payload["oracle"]
    assert set(d["samplers"]) == set(bench.SAMPLERS) == set(o["samplers"])
    assert set(d["references"]) == {"ode_dopri5", "pc_steps"}
    for key in ("real_data_floor", "baseline_gaussian_fit"):
        _check_interval(d[key]["fid"], n_boot=5)
    assert o["sw_floor"] > 0 and set(o["likelihood_check"]) >= {"exact_prior", "default_prior"}
    assert o["likelihood_check"]["exact_prior"]["max_abs_err_vs_p_eps"] < 0.05

    for suite in (d, o):
        for name, res in suite["samplers"].items():
            assert [r["nfe_budget"] for r in res["rows"]] == [5, 60]
            for r in res["rows"]:
                if r["status"] == "ok":
                    assert 0 < r["nfe_used"] <= r["nfe_budget"], (name, r)
                    assert r["seconds"] >= 0
                    if suite is d:
                        _check_interval(r["fid"], n_boot=5)
                        assert 0 <= r["confident_fraction"] <= 1
                    else:
                        assert r["sw"] >= 0
                        assert ("kl_q_p" in r) == (name in bench.DETERMINISTIC)
                else:
                    assert r["status"] == "skipped" and r["reason"]
    # DDPM-type steps need beta(t) dt < 1: 5 NFE is too coarse for pc and ancestral
    for name in ("pc", "ancestral"):
        row = d["samplers"][name]["rows"][0]
        assert row["status"] == "skipped" and "too coarse" in row["reason"]
    assert all(r["status"] == "ok" for r in d["samplers"]["ddim"]["rows"])

    t = payload["target"]
    assert t["best_reference"] in d["references"] and isinstance(t["passed"], bool)

    bench.main(["--out", str(out), "--markdown"])
    text = capsys.readouterr().out
    assert "| sampler | 5 | 60 |" in text and "Gaussian fit (baseline)" in text
    assert "```python" not in text


def _check_interval(f, n_boot):
    """A bootstrap FID interval as `bootstrap_frechet` defines it, for either method.

    With q_lo, q_hi the replicates' 2.5 % / 97.5 % quantiles and m = value + bias their mean:
    for n_boot <= 5 sorted replicates b_1..b_n, q_lo = b_1 + 0.1 (b_2 - b_1) <= (b_1 + 4 b_2)/5
    <= m, and likewise m <= q_hi. So the percentile interval [q_lo, q_hi] contains m, and the
    basic (pivotal) interval [2 value - q_hi, 2 value - q_lo] (clipped at 0) contains the
    bias-corrected value - bias = 2 value - m; replicates are >= 0, so it lies below 2 value.
    The slack covers float64 round-off of the 5-term mean (~5u relative).
    """
    assert f["n_boot"] == n_boot and f["confidence"] == 0.95
    v, lo, hi, bias = f["value"], f["ci_low"], f["ci_high"], f["bias"]
    slack = 1e-12 * max(1.0, v)
    assert v >= 0 and 0 <= lo <= hi, f
    if f["method"] == "basic":
        assert lo - slack <= max(0.0, v - bias) <= hi + slack, f
        assert hi <= 2 * v + slack, f
    else:
        assert f["method"] == "percentile", f
        assert lo - slack <= v + bias <= hi + slack, f


def _res(*rows):
    return {"rows": [dict(status="ok", nfe_budget=n, nfe_used=n, fid={"value": v})
                     for n, v in rows]}


REFS = {"ode": {"fid": {"value": 10.0, "ci_low": 8.0, "ci_high": 12.0}},
        "pc": {"fid": {"value": 11.0, "ci_low": 7.0, "ci_high": 15.0}}}


def test_target_check_passes_within_five_percent():
    t = bench.target_check({"a": _res((10, 10.4), (50, 9.0)), "b": _res((20, 30.0))},
                           {"ode": {"fid": {"value": 10.0, "ci_low": 9.9, "ci_high": 10.1}}})
    assert t["passed"] and t["best_sampler"] == "a" and t["best_nfe"] == 10
    assert t["best_ratio"] == pytest.approx(1.04)
    assert t["passing"] == [{"sampler": "a", "nfe_used": 10, "fid": 10.4,
                             "ratio": pytest.approx(1.04), "within_5pct": True,
                             "within_ci": False}]
    assert t["closest"]["sampler"] == "a" and t["closest"]["nfe_used"] == 10
    assert "PASS" in bench.verdict_line(t) and "a at 10 NFE: 10.40 (1.04x, within 5%)" in \
        bench.verdict_line(t)


def test_target_check_passes_inside_the_reference_ci_and_picks_the_best_reference():
    t = bench.target_check({"a": _res((20, 11.8))}, REFS)
    assert t["best_reference"] == "ode" and t["reference_fid"] == 10.0
    assert t["passed"] and t["passing"][0]["within_ci"] and not t["passing"][0]["within_5pct"]
    assert "inside the CI" in bench.verdict_line(t)
    # far below the reference also "reaches" it (one-sided), and is labelled as such
    low = bench.target_check({"a": _res((20, 7.0))}, REFS)
    assert low["passed"] and "below the reference" in bench.verdict_line(low)


def test_target_check_fails_and_ignores_large_nfe_and_skipped_rows():
    rows = {"a": _res((20, 12.5), (50, 10.0)),
            "b": {"rows": [{"status": "skipped", "nfe_budget": 5, "reason": "too coarse"}]}}
    t = bench.target_check(rows, REFS)
    assert not t["passed"] and t["passing"] == []
    assert t["best_sampler"] == "a" and t["best_fid"] == 12.5 and t["best_nfe"] == 20
    assert "FAIL" in bench.verdict_line(t)
    none = bench.target_check({"b": rows["b"]}, REFS)
    assert not none["passed"] and none["best_sampler"] is None
    assert "no sampler ran" in bench.verdict_line(none)
    # the NFE actually used decides, not the budget
    late = _res((20, 10.0))
    late["rows"][0]["nfe_used"] = 21
    assert not bench.target_check({"a": late}, REFS)["passed"]


@pytest.mark.parametrize("method", ["basic", "percentile"])
def test_interval_check_holds_for_bootstrap_frechet_and_rejects_the_other_method(method):
    import numpy as np
    from generative.metrics import bootstrap_frechet
    rng = np.random.default_rng(0)
    # 20 rows of the reference distribution: the plug-in bias (~0.18) exceeds the spread, so
    # the two intervals are disjoint ([0, 0.07] and [0.32, 0.43])
    gen, ref = rng.normal(size=(20, 3)), rng.normal(size=(2000, 3))
    f = bootstrap_frechet(gen, ref, n_boot=5, seed=1, method=method).as_dict()
    _check_interval(f, n_boot=5)
    other = {**f, "method": "percentile" if method == "basic" else "basic"}
    with pytest.raises(AssertionError):
        _check_interval(other, n_boot=5)
