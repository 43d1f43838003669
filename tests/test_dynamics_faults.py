"""Bad input to `dynamics` ends in a clear error whose message names the argument, never in a
silent NaN or an internal traceback (issue 14, item 6)."""
from __future__ import annotations

import math

import pytest
import torch

from dynamics import (EDMSDE, VESDE, VPSDE, CosineVPSDE, GaussianMixture, LinearPath,
                      SubVPSDE)
from solvers.errors import InvalidInputError

SDES = [VPSDE(), VESDE(), SubVPSDE(), CosineVPSDE(), EDMSDE()]
IDS = [type(s).__name__ for s in SDES]


# --------------------------------------------------------------------------- discretize

@pytest.mark.parametrize("sde", SDES, ids=IDS)
@pytest.mark.parametrize("dt", [-0.1, 0.0, math.nan, math.inf])
def test_discretize_rejects_a_step_that_is_not_positive_and_finite(sde, dt):
    x = torch.randn(3, 2)
    with pytest.raises(InvalidInputError, match=r"`dt` must be a finite step with 0 < dt <= T"):
        sde.discretize(x, 0.5 * sde.T, dt * sde.T if math.isfinite(dt) else dt)
    with pytest.raises(InvalidInputError, match="`dt`"):  # the reverse SDE's step too
        sde.reverse(lambda x, t: -x).discretize(x, 0.5 * sde.T, -0.1 * sde.T)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_discretize_rejects_a_step_longer_than_the_process(sde):
    with pytest.raises(InvalidInputError, match=r"got dt = .* at t = "):
        sde.discretize(torch.randn(3, 2), 0.5 * sde.T, 1.5 * sde.T)


def test_discretize_names_dt_when_ddpm_beta_n_reaches_one():
    with pytest.raises(InvalidInputError, match=r"`dt` = 0.5 is too large .* beta_n = .* < 1"):
        VPSDE().discretize(torch.randn(3, 2), 0.9, 0.5)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_discretize_valid_steps_stay_finite_including_the_first_level(sde):
    """A step may start below 0 (DDPM's / SMLD's first level ends at t = 0 or close to it)."""
    x = torch.randn(3, 2, dtype=torch.float64)
    for t, dt in [(0.5 * sde.T, 0.01 * sde.T), (0.0, 0.01 * sde.T), (0.05 * sde.T, 0.1 * sde.T)]:
        f, g = sde.discretize(x, t, dt)
        assert torch.isfinite(f).all() and torch.isfinite(g).all()


# --------------------------------------------------------------------------- prior_sample

PROCESSES = SDES + [LinearPath()]
PIDS = IDS + ["LinearPath"]


@pytest.mark.parametrize("sde", PROCESSES, ids=PIDS)
@pytest.mark.parametrize("shape, got", [((-1, 2), r"\(-1, 2\)"), ((0, 2), r"\(0, 2\)"),
                                        ((2, 0), r"\(2, 0\)"), ((), r"\(\)"),
                                        ((2.5, 2), "entries must be ints"),
                                        (("a", 2), "entries must be ints"),
                                        ("ab", "str"), (3, "int 3"), (None, "NoneType")])
def test_prior_sample_rejects_a_bad_shape(sde, shape, got):
    with pytest.raises(InvalidInputError,
                       match=r"`shape` must be a sequence of positive ints \(B, \*event\); "
                             rf"got .*{got}"):
        sde.prior_sample(shape)


@pytest.mark.parametrize("sde", PROCESSES, ids=PIDS)
def test_prior_sample_rejects_bad_dtype_generator_and_device(sde):
    with pytest.raises(InvalidInputError, match=r"`dtype` must be None or a floating-point "
                                                r"torch.dtype .* got torch.int64"):
        sde.prior_sample((2, 2), dtype=torch.int64)
    with pytest.raises(InvalidInputError, match=r"`generator` must be None or a "
                                                r"torch.Generator .* got int 3"):
        sde.prior_sample((2, 2), generator=3)
    with pytest.raises(InvalidInputError, match=r"`device` must be None, a torch.device or a "
                                                r"device string .* got str 'foo'"):
        sde.prior_sample((2, 2), device="foo")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match=r"`device` = 'cuda' is not available on "
                                                    r"this machine \(0 CUDA device"):
            sde.prior_sample((2, 2), device="cuda")


def test_prior_sample_accepts_torch_size_and_numpy_ints():
    np = pytest.importorskip("numpy")
    assert VPSDE().prior_sample(torch.Size([2, 3])).shape == (2, 3)
    assert VPSDE().prior_sample((np.int64(2), 3)).shape == (2, 3)


# --------------------------------------------------------------------------- constructors

@pytest.mark.parametrize("make, name", [
    (lambda: VPSDE(beta_min=math.nan), "beta_min"), (lambda: VPSDE(beta_max=math.inf), "beta_max"),
    (lambda: VPSDE(T=math.nan), "T"), (lambda: VPSDE(t_min=math.nan), "t_min"),
    (lambda: VESDE(sigma_max=math.nan), "sigma_max"), (lambda: VESDE(t_min="x"), "t_min"),
    (lambda: SubVPSDE(beta_min="a"), "beta_min"), (lambda: CosineVPSDE(s=math.nan), "s"),
    (lambda: CosineVPSDE(T=math.inf), "T"), (lambda: EDMSDE(sigma_min=math.nan), "sigma_min"),
    (lambda: VPSDE(t_min=-1), "t_min")])
def test_constructors_reject_non_finite_or_non_numeric_parameters(make, name):
    with pytest.raises(InvalidInputError, match=rf"`{name}` must (be|satisfy)"):
        make()


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_marginal_rejects_times_outside_the_process(sde):
    x = torch.randn(3, 2)
    with pytest.raises(InvalidInputError, match=r"`t` must lie in \[0, T\]"):
        sde.marginal(x, 1.5 * sde.T)
    with pytest.raises(InvalidInputError, match=r"`t` must be finite"):
        sde.marginal(x, torch.full((3,), math.nan))


# --------------------------------------------------------------------------- mixture

SINGULAR = r"`covs` is singular, so the data mixture has no density"


def _singular():
    return GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 0.0]]])


@pytest.mark.parametrize("call", [
    lambda m, x: m.log_prob(x), lambda m, x: m.score(x),
    lambda m, x: m.marginal_score(VPSDE(), x, 0.0),
    lambda m, x: m.marginal_log_prob(VPSDE(), x, 0.0),
    lambda m, x: m.marginal_denoise(VPSDE(), x, 0.0),
    lambda m, x: m.posterior_log_prob(VPSDE(), x, 0.0),
    lambda m, x: m.score_fn(VPSDE())(x, torch.zeros(3)),
    lambda m, x: m.log_prob_fn(EDMSDE())(x, torch.tensor([0.0, 1.0, 2.0])),
    lambda m, x: m.marginal(VPSDE(), 0.0).score(x)],
    ids=["log_prob", "score", "marginal_score", "marginal_log_prob", "marginal_denoise",
         "posterior_log_prob", "score_fn", "log_prob_fn_one_row_at_0", "marginal_at_0"])
def test_singular_mixture_at_sigma_zero_raises_the_same_error_everywhere(call):
    with pytest.raises(InvalidInputError, match=SINGULAR):
        call(_singular(), torch.randn(3, 2))


def test_singular_mixture_is_fine_where_sigma_is_positive():
    m, x = _singular(), torch.randn(3, 2, dtype=torch.float64)
    assert torch.isfinite(m.marginal_score(VPSDE(), x, 0.5)).all()
    assert torch.isfinite(m.score_fn(VPSDE())(x, torch.full((3,), 0.5))).all()
    assert torch.isfinite(m.sample(4)).all()


@pytest.mark.parametrize("n, got", [(-1, "int -1"), (0, "int 0"), (2.5, "float 2.5"),
                                    ("a", "str 'a'"), ((2, 3), "tuple"), (True, "bool True")])
def test_mixture_sample_rejects_a_bad_count(n, got):
    m = GaussianMixture([1.0], [[0.0]], [[[1.0]]])
    with pytest.raises(InvalidInputError, match=rf"`n` must be an integer >= 1 \(number of "
                                                rf"samples\); got {got}"):
        m.sample(n)


def test_mixture_sample_rejects_a_bad_generator():
    m = GaussianMixture([1.0], [[0.0]], [[[1.0]]])
    with pytest.raises(InvalidInputError, match=r"`generator` must be None or a torch.Generator"):
        m.sample(2, generator=3)
    with pytest.raises(InvalidInputError, match=r"`generator`"):
        m.marginal_sample(VPSDE(), 0.5, 2, generator=3)
