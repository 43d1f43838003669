"""dynamics' error root, its one `check_positive`, and the names that replaced `eps`
(``t_min`` for the end time, ``'noise'`` for the ε-prediction) with their deprecated aliases."""
import math
import warnings

import numpy as np
import pytest
import torch

import dynamics as D
from dynamics.checks import check_positive
from dynamics.errors import DynamicsError, InputError
from solvers.errors import InvalidInputError
from solvers.validation import check_positive as solvers_check_positive

F64 = torch.float64


def test_input_errors_are_dynamics_errors_and_value_errors():
    with pytest.raises(InputError) as info:
        D.VPSDE(beta_min=-1.0)
    err = info.value
    assert isinstance(err, DynamicsError) and isinstance(err, InvalidInputError)
    assert isinstance(err, ValueError) and "`beta_min`" in str(err)
    assert D.InputError is InputError and D.DynamicsError is DynamicsError


@pytest.mark.parametrize("make", [
    lambda: D.VESDE(sigma_min=0.5, sigma_max=0.1),
    lambda: D.GaussianMixture(torch.ones(2), torch.zeros(3, 2), torch.eye(2).expand(3, 2, 2)),
    lambda: D.ScoreAdapter(lambda x, t: x, object(), "noise"),
    lambda: D.langevin_step(torch.zeros(2, 2), torch.zeros(3, 2), 0.1),
    lambda: D.VPSDE().marginal(torch.zeros(2, 2), 2.0),
])
def test_every_module_raises_the_layer_error(make):
    with pytest.raises(InputError):
        make()


@pytest.mark.parametrize("value", [1, 2.5, np.float32(0.5), np.int64(3), torch.tensor(4.0)])
def test_check_positive_is_the_solvers_check(value):
    assert check_positive("h", value) == solvers_check_positive("h", value) == float(value)


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf, True, "1.0", None,
                                   torch.ones(2)])
def test_check_positive_refuses_what_the_solvers_check_refuses(value):
    with pytest.raises(InvalidInputError) as theirs:
        solvers_check_positive("h", value)
    with pytest.raises(InputError) as ours:
        check_positive("h", value)
    assert str(ours.value) == str(theirs.value) and "`h`" in str(ours.value)


@pytest.mark.parametrize("cls, default", [(D.VPSDE, 1e-3), (D.SubVPSDE, 1e-3),
                                          (D.VESDE, 1e-5), (D.CosineVPSDE, 1e-3)])
def test_t_min_is_the_end_time_and_eps_its_deprecated_alias(cls, default):
    assert cls().t_min == default
    assert cls(t_min=0.01).t_min == 0.01
    with pytest.warns(DeprecationWarning, match="`eps` is deprecated, use `t_min`"):
        sde = cls(eps=0.02)
    assert sde.t_min == 0.02
    with pytest.warns(DeprecationWarning, match=r"\.eps is deprecated, use \.t_min"):
        assert sde.eps == 0.02
    with pytest.raises(InputError, match="pass `t_min` only"):
        cls(t_min=0.01, eps=0.02)
    with pytest.raises(InputError, match="`t_min` must satisfy 0 <= t_min < T"):
        cls(t_min=-0.5)
    assert "t_min=0.02" in repr(sde)


def test_path_sde_and_reverse_processes_carry_t_min():
    path = D.LinearPath()
    sde = D.PathSDE(path, T=0.999, t_min=1e-3)
    assert sde.t_min == 1e-3 and D.PathSDE(path, T=0.999).t_min == path.t_min
    with pytest.warns(DeprecationWarning):
        assert D.PathSDE(path, T=0.999, eps=0.01).t_min == 0.01
    rev = D.VPSDE(t_min=0.01).reverse(lambda x, t: -x)
    assert rev.t_min == 0.01
    with pytest.warns(DeprecationWarning):
        assert rev.eps == 0.01
    assert D.EDMSDE(sigma_min=0.01).t_min == 0.01  # time is the noise level


def test_noise_prediction_and_its_deprecated_name_eps():
    sde = D.VPSDE()
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    assert "noise" in D.PREDICTIONS and "eps" not in D.PREDICTIONS
    new = D.convert(noise, x, 0.5, sde, "noise", "score")
    with pytest.warns(DeprecationWarning, match="'eps' is deprecated, use 'noise'"):
        old = D.convert(noise, x, 0.5, sde, "eps", "score")
    torch.testing.assert_close(old, new, rtol=0, atol=0)  # the same arithmetic
    with pytest.warns(DeprecationWarning):
        assert D.ScoreAdapter(lambda y, t: y, sde, "eps").prediction == "noise"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names warn about nothing
        assert D.ScoreAdapter(lambda y, t: y, sde).prediction == "noise"
        assert D.check_prediction("x0") == "x0"
    with pytest.raises(InputError, match="`prediction` must be one of"):
        D.check_prediction("epsilon")


def test_no_dynamics_module_raises_the_solvers_error_directly():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "dynamics"
    direct = [f"{p.name}:{i}" for p in sorted(root.glob("*.py"))
              for i, line in enumerate(p.read_text().splitlines(), 1)
              if "raise InvalidInputError" in line]
    assert not direct, direct


def test_one_path_check_and_one_sde_and_score_check():
    from dynamics.gaussian_path import check_path
    from dynamics.reverse import check_sde_and_score
    for make in (lambda: D.PathSDE(object()), lambda: D.ScoreAdapter(lambda x, t: x, 3.0),
                 lambda: check_path("linear")):
        with pytest.raises(InputError, match="`path` must be a dynamics.GaussianPath"):
            make()
    with pytest.raises(InputError, match="`sde` must be a dynamics.LinearSDE"):
        check_sde_and_score("vp", lambda x, t: x)
    with pytest.raises(InputError, match="`score_fn` must be a callable"):
        check_sde_and_score(D.VPSDE(), None)
    check_sde_and_score(D.VPSDE(), lambda x, t: x)
