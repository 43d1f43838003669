"""benchmarks.inverse_oracle: its pure functions (moment errors, operators, the mixture, the
noise floor) and a tiny run of two tasks."""
import math

import pytest
import torch

from benchmarks import inverse_oracle as inv

F64 = torch.float64


def test_moment_errors_are_zero_on_exact_moments_and_scale_with_a_shift():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(3, generator=g, dtype=F64)
    v = torch.randn(3, generator=g, dtype=F64)
    x = torch.stack([m + v, m - v])              # sample mean m, sample covariance 2 v v^T
    cov = 2 * torch.outer(v, v)
    e = inv.moment_errors(x, m, cov)
    assert e["mean_err"] < 1e-15 and e["cov_err"] < 1e-14
    delta = torch.tensor([0.3, 0.0, -0.4], dtype=F64)           # |delta| = 0.5
    e = inv.moment_errors(x + delta, m, cov)
    assert e["mean_err"] == pytest.approx(0.5 / math.sqrt(float(torch.trace(cov))), rel=1e-12)
    assert e["cov_err"] < 1e-14                  # a shift leaves the covariance alone
    e = inv.moment_errors(x, m, 2 * cov)         # C_hat = C / 2: |C/2 - C| / |C| = 1/2
    assert e["cov_err"] == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(ValueError, match="moment_errors"):
        inv.moment_errors(x[:1], m, cov)
    with pytest.raises(ValueError, match="moment_errors"):
        inv.moment_errors(x, m[:2], cov)


def test_operators_of_the_tasks():
    d = math.prod(inv.EVENT)
    sizes = {"inpaint": d // 2, "colorize": d // 3, "superres": d // 4, "matrix": d // 4}
    x = torch.randn(2, *inv.EVENT, generator=torch.Generator().manual_seed(1), dtype=F64)
    for task in inv.TASKS:
        A = inv.make_operator(task)
        assert A(x).reshape(2, -1).shape[1] == sizes[task], task
        assert (A.gram is None) == (task == "matrix")
    with pytest.raises(ValueError, match="task"):
        inv.make_operator("deblur")


def test_image_mixture_is_a_valid_prior():
    mix = inv.image_mixture()
    d = math.prod(inv.EVENT)
    assert mix.means.shape == (4, d) and mix.covs.shape == (4, d, d)
    assert float(torch.linalg.eigvalsh(mix.covs).min()) >= 0.01 - 1e-12    # + 0.01 I
    assert torch.allclose(mix.covs, mix.covs.transpose(1, 2), rtol=0, atol=0)
    assert float(mix.weights.sum()) == pytest.approx(1.0, abs=1e-15)


def test_noise_floor_scales_as_one_over_sqrt_n():
    """E |m_hat - m|^2 = tr C / n exactly, so the mean error of n exact samples is about
    n^-1/2; a factor 2 either way covers the spread of 3 draws (chi-like, a few effective
    dimensions)."""
    mix = inv.image_mixture()
    g = torch.Generator().manual_seed(2)
    for n in (100, 1600):
        f = inv.noise_floor(mix, n, 3, g)
        assert 0.5 / math.sqrt(n) < f["mean_err"]["mean"] <= f["mean_err"]["max"] \
            < 2 / math.sqrt(n), (n, f)


def test_exact_method_counts_its_nfe_and_replacement_needs_orthogonal_rows():
    from dynamics import VPSDE
    from generative.inverse import mixture_posterior
    sde, mix = VPSDE(), inv.image_mixture()
    g = torch.Generator().manual_seed(3)
    x_init = sde.prior_sample((16, *inv.EVENT), generator=g, dtype=F64)
    A = inv.make_operator("matrix")
    y = A(mix.sample(1, g).reshape(1, *inv.EVENT))[0]
    post = mixture_posterior(mix, A, y, inv.SIGMA_Y, event_shape=inv.EVENT)
    x, nfe = inv.run_method("exact (dpmpp_2m, 20 NFE)", sde, mix, post, A, y, x_init, 0)
    assert nfe == 20 and x.shape == (16, math.prod(inv.EVENT)) and torch.isfinite(x).all()
    assert inv.run_method("replacement (ddim eta=1, 200 steps)", sde, mix, post, A, y, x_init,
                          0) is None


@pytest.mark.slow
def test_tiny_run_of_two_tasks(tmp_path):
    state = inv.main(["--out", str(tmp_path), "--n", "64", "--tasks", "inpaint", "matrix",
                      "--no-progress"])
    assert (tmp_path / "inverse_oracle.png").stat().st_size > 1000
    assert "noise floor" in (tmp_path / "inverse_oracle.md").read_text()
    nfe = {"exact (dpmpp_2m, 20 NFE)": 20, "exact (dpmpp_2m, 50 NFE)": 50,
           "replacement (ddim eta=1, 200 steps)": 201, "pigdm (ddim eta=1, 200 steps)": 201}
    for task in ("inpaint", "matrix"):
        r = state["tasks"][task]
        assert set(r["methods"]) == set(inv.METHODS)
        for method, res in r["methods"].items():
            if task == "matrix" and method.startswith("replacement"):
                assert res["status"] == "not applicable"
                continue
            assert res["status"] == "ok" and res["nfe"] == nfe[method], (task, method)
        # the exact conditional score at 50 NFE has negligible solver error: its errors are
        # one more draw of the floor's statistic (3x the max of 3 draws: far in the tail)
        exact = r["methods"]["exact (dpmpp_2m, 50 NFE)"]
        for key in ("mean_err", "cov_err"):
            assert exact[key] < 3 * r["floor"][key]["max"], (task, key, exact, r["floor"])
