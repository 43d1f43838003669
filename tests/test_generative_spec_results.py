"""Typed model specs (per-kind option dataclasses), result dataclasses of the likelihood and
flow-matching functions, the NFE of classifier-free guidance, the resume-mismatch order, the
one default NFE, the one digits evaluation and the names that replaced `eps`."""
import warnings
from dataclasses import asdict

import numpy as np
import pytest
import torch

from dynamics import VPSDE, GaussianMixture
from generative import cli, load_data
from generative.flow_matching import fm_bits_per_dim, fm_log_likelihood, fm_sample
from generative.likelihood import bits_per_dim, log_likelihood
from generative.metrics import DigitsClassifier, DigitsEvaluator, digits_predict
from generative.metrics.frechet import frechet_distance
from generative.models import (DEFAULT_NFE, ModelError, build_model, check_same_model,
                               make_spec, sample, score_budget)
from generative.results import LogProbResult, SampleResult, merge_samples
from generative.spec import (FFJORDOptions, FlowMatchingOptions, ModelSpec, ScoreOptions,
                             describe_differences, meta_differences)

F64 = torch.float64
MIX = GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.0, -0.5]], [[[0.3, 0.0], [0.0, 0.2]]] * 2)


@pytest.fixture(scope="module")
def moons():
    return load_data("moons")


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


# --------------------------------------------------------------------------- ModelSpec

def test_spec_options_are_the_kinds_dataclasses(moons):
    spec = make_spec("score", moons, sde="ve", net_kwargs={"width": 8, "depth": 1})
    assert isinstance(spec, ModelSpec) and isinstance(spec.options, ScoreOptions)
    assert spec.options.sde == "ve" and spec.options.weighting == "std2"   # the rest: defaults
    assert ModelSpec.from_meta(spec.to_meta()) == spec
    assert isinstance(make_spec("ffjord", moons).options, FFJORDOptions)
    fm = make_spec("ot-fm", moons, path="cosine")
    assert fm.options == FlowMatchingOptions(path="cosine", t_min=None)
    as_dict = ModelSpec("fm", "moons", (2,), None, False, 1.0, options={"path": "cosine"})
    assert as_dict.options == fm.options  # a dict of some fields is converted
    assert set(asdict(spec.options)) <= set(spec.to_meta())


def test_spec_refuses_options_of_another_kind(moons):
    with pytest.raises(ModelError, match="option 'path' does not apply to 'score'"):
        ModelSpec("score", "moons", (2,), None, False, 1.0, options={"path": "linear"})
    with pytest.raises(ModelError, match="must be a FlowMatchingOptions"):
        ModelSpec("fm", "moons", (2,), None, False, 1.0, options=ScoreOptions())
    with pytest.raises(ModelError, match="unknown model kind 'cnf'"):
        ModelSpec("cnf", "moons", (2,), None, False, 1.0)
    with pytest.raises(ModelError, match=r"\['sde'\] must be one of"):
        make_spec("score", moons, sde="vpp")


# --------------------------------------------------------------------------- resume order

def test_differences_name_the_key_that_matters_first(moons):
    a = make_spec("score", moons, net_kwargs={"width": 8, "depth": 1}).to_meta()
    b = make_spec("fm", load_data("circles"), net_kwargs={"width": 16, "depth": 1}).to_meta()
    # MATTERS_FIRST in its order, then the rest by name (alphabetically 'cond' came first)
    assert meta_differences(a, b) == ["kind", "data", "net_kwargs", "sde", "path", "cond",
                                      "data_std", "label_dropout", "weighting"]
    text = describe_differences(a, b)
    assert text.startswith("first kind: saved 'score' vs given 'fm' (also data: saved")
    assert describe_differences(a, a) is None


def test_check_same_model_names_kind_before_the_options(moons):
    a = make_spec("score", moons, net_kwargs={"width": 8, "depth": 1})
    b = make_spec("fm", moons, net_kwargs={"width": 8, "depth": 1})
    with pytest.raises(ModelError, match="cannot resume.*; first kind: saved 'score' vs given"):
        check_same_model(a, b)
    check_same_model(a, a.to_meta())  # the same model, either form


# --------------------------------------------------------------------------- one default NFE

def test_one_default_nfe_for_the_library_and_the_cli():
    assert cli.DEFAULT_NFE is DEFAULT_NFE == 500
    assert score_budget("pc", None) == DEFAULT_NFE and score_budget("ode", None) is None
    assert score_budget("em", 30) == 30 and score_budget("ode", 40) == 40


# --------------------------------------------------------------------------- CFG NFE

def _conditional(digits):
    spec = make_spec("score", digits, net_kwargs={"width": 16, "depth": 1},
                     num_classes=digits.num_classes, label_dropout=0.1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_model(spec).eval(), spec


@pytest.mark.parametrize("scale, per_call", [(2.0, 2), (0.0, 1)])
def test_cfg_sample_counts_both_score_evaluations(digits, scale, per_call):
    model, spec = _conditional(digits)
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        r = sample(model, spec, 4, label=3, guidance="cfg", scale=scale, sampler="ddim",
                   nfe=10, generator=torch.Generator().manual_seed(0))
    hook.remove()
    assert r.score_calls == 10                    # ten guided-score calls (the budget)
    assert r.nfe == per_call * 10 == len(calls)   # one batch of 4: network calls per sample
    x, nfe = r
    assert x.shape == (4, 1, 8, 8) and nfe == r.nfe


def test_unguided_sample_counts_one_evaluation_per_call(digits):
    model, spec = _conditional(digits)
    r = sample(model, spec, 2, label=1, guidance="none", sampler="ddim", nfe=6,
               generator=torch.Generator().manual_seed(0))
    assert r.nfe == r.score_calls == 6


# --------------------------------------------------------------------------- results

def test_log_likelihood_returns_a_result_with_stats():
    sde = VPSDE()
    x = MIX.sample(8, torch.Generator().manual_seed(0)).double()
    r = log_likelihood(sde, MIX.score_fn(sde), x, rtol=1e-6, atol=1e-6)
    assert isinstance(r, LogProbResult) and r.logp.shape == (8,)
    assert r.nfe == float(r.stats["nfe"]) > 0 and "n_steps" in r.stats
    logp, nfe = r
    assert logp is r.logp and nfe == r.nfe
    with pytest.warns(DeprecationWarning, match=r"return_stats=True\) is deprecated"):
        old_logp, stats = log_likelihood(sde, MIX.score_fn(sde), x, rtol=1e-6, atol=1e-6,
                                         return_stats=True)
    torch.testing.assert_close(old_logp, r.logp, rtol=0, atol=0)  # the same solve
    assert stats["nfe"] == r.stats["nfe"]
    bpd = bits_per_dim(sde, MIX.score_fn(sde), x, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(bpd, -r.logp / (2 * np.log(2)), rtol=1e-12, atol=0)


def test_log_likelihood_t_min_and_its_deprecated_name_eps():
    sde = VPSDE()
    x = MIX.sample(4, torch.Generator().manual_seed(1)).double()
    new = log_likelihood(sde, MIX.score_fn(sde), x, t_min=0.01).logp
    with pytest.warns(DeprecationWarning, match="`eps` is deprecated, use `t_min`"):
        old = log_likelihood(sde, MIX.score_fn(sde), x, eps=0.01).logp
    torch.testing.assert_close(old, new, rtol=0, atol=0)
    from generative.errors import InputError
    with pytest.raises(InputError, match="pass `t_min` only"):
        log_likelihood(sde, MIX.score_fn(sde), x, t_min=0.01, eps=0.02)


def test_flow_matching_functions_return_results():
    torch.manual_seed(0)
    velocity = torch.nn.Linear(2, 2).double()

    def v(x, t):
        return velocity(x)
    r = fm_sample(v, (5, 2), method="rk4", step_size=0.25, dtype=F64,
                  generator=torch.Generator().manual_seed(0))
    assert isinstance(r, SampleResult) and r.x.shape == (5, 2)
    assert r.nfe == 16 == r.stats["nfe"]            # rk4: 4 stages x 4 steps on [0, 1]
    lp = fm_log_likelihood(v, r.x, method="rk4", step_size=0.25)
    assert isinstance(lp, LogProbResult) and lp.logp.shape == (5,) and lp.nfe == 16
    torch.testing.assert_close(fm_bits_per_dim(v, r.x, method="rk4", step_size=0.25),
                               -lp.logp / (2 * np.log(2)), rtol=1e-12, atol=0)
    with pytest.warns(DeprecationWarning):
        x, stats = fm_sample(v, z=r.x, method="rk4", step_size=0.25, return_stats=True)
    assert isinstance(stats, dict) and stats["nfe"] == 16


def test_merge_samples_weights_nfe_by_rows():
    a = SampleResult(torch.zeros(3, 2), 10.0, 5.0)
    b = SampleResult(torch.ones(1, 2), 20.0, 10.0)
    m = merge_samples([a, b])
    assert m.x.shape == (4, 2) and m.nfe == (3 * 10 + 20) / 4 and m.score_calls == 6.25
    assert merge_samples([a, SampleResult(torch.ones(2, 2), 4.0)]).score_calls is None
    empty = SampleResult(torch.zeros(0, 2), 0.0)         # an empty share does not count
    assert merge_samples([a, empty]).score_calls == 5.0


# --------------------------------------------------------------------------- digits evaluation

def test_digits_evaluator_scores_like_its_parts(digits):
    torch.manual_seed(0)
    clf = DigitsClassifier(feature_dim=8, channels=4).eval()
    ref = digits.test[:200]
    ev = DigitsEvaluator(clf, ref, n_boot=5, seed=0)
    x, y = digits.train[:100], digits.train_labels[:100]
    scores = ev(x, y)
    pred, conf = digits_predict(x, clf)
    assert scores["confident_fraction"] == float((conf > 0.9).double().mean())
    assert scores["accuracy"] == float((pred == y).double().mean())
    assert scores["fid"]["value"] >= 0 and scores["fid"]["n_boot"] == 5
    assert ev(ref)["fid"]["value"] == pytest.approx(0.0, abs=1e-6)  # the reference itself
    floor = ev.data_floor(digits.train, 50, torch.Generator().manual_seed(3), digits.train_labels)
    idx = torch.randperm(len(digits.train), generator=torch.Generator().manual_seed(3))[:50]
    assert floor == {**ev(digits.train[idx], digits.train_labels[idx]), "n": 50}


def test_cli_holds_no_digits_evaluation():
    import inspect
    source = inspect.getsource(cli)
    assert "_digits_fid" not in source and "frechet_distance(" not in source


# --------------------------------------------------------------------------- Fréchet offset

def test_frechet_offset_and_its_deprecated_name_eps():
    mu, cov = np.zeros(3), np.eye(3)
    assert frechet_distance(mu, cov, mu + 1, cov, offset=1e-3) == pytest.approx(3.0)
    with pytest.warns(DeprecationWarning, match="`eps` is deprecated, use `offset`"):
        assert frechet_distance(mu, cov, mu + 1, cov, eps=1e-3) == pytest.approx(3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frechet_distance(mu, cov, mu, cov)


def test_sample_t_min_and_its_deprecated_name_eps(moons):
    spec = make_spec("score", moons, net_kwargs={"width": 8, "depth": 1})
    model = build_model(spec).eval()
    kw = dict(sampler="ddim", nfe=4, denoise=False)
    a = sample(model, spec, 3, generator=torch.Generator().manual_seed(0), t_min=0.05, **kw)
    with pytest.warns(DeprecationWarning, match="`eps` is deprecated, use `t_min`"):
        b = sample(model, spec, 3, generator=torch.Generator().manual_seed(0), eps=0.05, **kw)
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)


def test_integrate_log_density_returns_a_density_integral():
    from generative.likelihood import integrate_log_density
    from generative.results import DensityIntegral
    x = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    r = integrate_log_density(lambda y, t: -y, x, 0.0, 1.0, kinetic=True, rtol=1e-9, atol=1e-9)
    assert isinstance(r, DensityIntegral) and set(r.regs) == {"kinetic"}
    # dx/dt = -x: x(1) = x e^-1 and div = -2 everywhere, so delta = -2 exactly (tolerance 1e-9)
    torch.testing.assert_close(r.x, x * np.exp(-1.0), rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(r.delta, torch.full((3,), -2.0, dtype=F64), rtol=0, atol=1e-7)
    x1, delta, regs, stats = r
    assert x1 is r.x and delta is r.delta and stats["nfe"] == r.stats["nfe"] > 0


def test_sample_flag_t_min_and_its_old_name():
    parser = cli.build_parser()
    for flag in ("--t-min", "--eps"):
        args = parser.parse_args(["sample", "--ckpt", "c.pt", flag, "0.02", "--out", "o.png"])
        assert args.t_min == 0.02
