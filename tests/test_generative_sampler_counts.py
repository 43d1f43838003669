"""The front end's contract on every registered sampler: ``SampleResult.nfe`` is the number of
score evaluations actually made (counted by wrapping the score), and the end time is the
keyword ``t_min`` (``eps`` its deprecated name)."""
import warnings

import pytest
import torch

from dynamics import GaussianMixture, VPSDE
from generative.samplers import SAMPLERS, sample
from solvers.errors import InvalidInputError

GM = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [1.5, 1.0]],
                     [[[0.3, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.4]]])
# DDPM-type steps need beta(t) dt < 1 on the VP SDE: these samplers get a fine grid
FINE = {"em": 300, "reverse_diffusion": 300, "ancestral": 300, "pc": 300}


class Counting:
    def __init__(self, score):
        self.score, self.calls = score, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.score(x, t)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_nfe_is_the_number_of_score_calls(name):
    """With an NFE budget (denoise on and off) and with the sampler's own steps: the reported
    NFE equals the counted calls, and never exceeds the budget."""
    sde = VPSDE()
    budget = FINE.get(name, 40)
    runs = [dict(nfe=budget), dict(nfe=budget, denoise=True),
            dict(n_steps=FINE.get(name, 5), denoise=True)]
    if name == "ode":
        runs.append(dict(rtol=1e-3, atol=1e-3))          # adaptive: the solver's own count
    for kw in runs:
        score = Counting(GM.score_fn(sde))
        res = sample(name, sde, score, (6, 2), generator=torch.Generator().manual_seed(0), **kw)
        assert isinstance(res.nfe, int) and res.nfe == score.calls > 0, (name, kw)
        if "nfe" in kw:
            assert res.nfe <= kw["nfe"], (name, kw, res.nfe)
        assert torch.isfinite(res.x).all()


def test_t_min_ends_the_grid_and_eps_is_its_deprecated_name():
    sde = VPSDE()
    sf = GM.score_fn(sde)
    x_T = sde.prior_sample((5, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    seen = []
    a = sample("ddim", sde, sf, x_init=x_T, n_steps=4, t_min=0.05,
               callback=lambda i, t, x, d: seen.append(float(t)))
    assert seen[-1] == pytest.approx(0.05, rel=0, abs=1e-15) and seen[0] == sde.T
    with pytest.warns(DeprecationWarning, match="`eps` is deprecated, use `t_min`"):
        b = sample("ddim", sde, sf, x_init=x_T, n_steps=4, eps=0.05)
    assert torch.equal(a.x, b.x)
    with pytest.raises(InvalidInputError, match="pass `t_min` only"):
        sample("ddim", sde, sf, x_init=x_T, n_steps=4, t_min=0.05, eps=0.05)
    with pytest.raises(InvalidInputError, match="`t_min` must satisfy"):
        sample("em", sde, sf, x_init=x_T, n_steps=4, t_min=-0.1)
    with warnings.catch_warnings():              # the new name, and the default, do not warn
        warnings.simplefilter("error")
        sample("ddim", sde, sf, x_init=x_T, n_steps=4, t_min=0.05)
        sample("dpmpp_2m", sde, sf, x_init=x_T, n_steps=4)


def test_models_sample_passes_t_min_without_a_deprecation_warning():
    """`generative.models.sample` hands ``t_min`` to the samplers under its new name."""
    from generative.data import load_data
    from generative.models import build_model, make_spec
    from generative.models import sample as model_sample
    data = load_data("moons")
    spec = make_spec("score", data, net_kwargs={"width": 8, "depth": 1})
    model = build_model(spec).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        res = model_sample(model, spec, 3, generator=torch.Generator().manual_seed(0),
                           sampler="ddim", nfe=4, denoise=False, t_min=0.05)
    assert res.x.shape == (3, 2) and torch.isfinite(res.x).all()
