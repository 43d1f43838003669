"""Denoising score matching: the exact score of a Gaussian data set attains the
irreducible minimum (closed form), perturbed scores pay exactly E[λ|δ|²] more."""
import math

import pytest
import torch

from dynamics import VESDE, VPSDE, CosineVPSDE, SubVPSDE
from generative.losses import dsm_loss, dsm_loss_per_sample, make_dsm_loss, sample_time
from generative.nets import MLP
from generative.train import TrainConfig, train


SDE = VPSDE(beta_min=0.1, beta_max=20.0, T=1.0)
SDES = {"vp": SDE, "subvp": SubVPSDE(), "ve": VESDE(sigma_min=0.01, sigma_max=5.0),
        "cosine": CosineVPSDE()}
M = torch.tensor([0.5, -1.0], dtype=torch.float64)  # data ~ N(M, S² I)
S = 0.7


def _alpha_sigma(t, sde=SDE):
    mean, std = sde.marginal(torch.ones(len(t), 1, dtype=t.dtype), t)
    return mean[:, 0], std.reshape(-1)


def _g2(t, sde=SDE):
    return sde.g(t, torch.zeros(len(t), 1, dtype=t.dtype)).reshape(-1) ** 2


def _exact_score(x, t, sde=SDE):
    a, s = _alpha_sigma(t, sde)
    v = (a**2 * S**2 + s**2)[:, None]
    return -(x - a[:, None] * M) / v


def _exact_eps(x, t):
    return -_alpha_sigma(t)[1][:, None] * _exact_score(x, t)


def _expected_min(weighting, t_min, sde=SDE, n=200_001):
    """E_t of the per-dimension minimum: α²S²/v (λ=σ²) or g²α²S²/(σ² v) (λ=g²)."""
    t = torch.linspace(t_min, float(sde.T), n, dtype=torch.float64)
    a, s = _alpha_sigma(t, sde)
    v = a**2 * S**2 + s**2
    f = a**2 * S**2 / v
    if weighting == "likelihood":
        f = f * _g2(t, sde) / s**2
    return float(torch.trapezoid(f, t) / (float(sde.T) - t_min))


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return M + S * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _mean_and_se(v):
    return float(v.mean()), float(v.std() / math.sqrt(len(v)))


@pytest.mark.parametrize("kind,parameterization,weighting,t_min", [
    ("vp", "noise", "std2", 1e-5), ("vp", "score", "std2", 1e-3),
    ("vp", "noise", "likelihood", 1e-2), ("vp", "score", "likelihood", 1e-2),
    ("subvp", "noise", "std2", 1e-3), ("ve", "noise", "std2", 1e-5),
    ("ve", "score", "likelihood", 1e-2), ("cosine", "noise", "likelihood", 1e-2)])
def test_exact_score_attains_closed_form_minimum(kind, parameterization, weighting, t_min):
    sde = SDES[kind]

    def score(x, t):
        return _exact_score(x, t, sde)

    def eps(x, t):
        return -_alpha_sigma(t, sde)[1][:, None] * score(x, t)
    x0 = _data(200_000, seed=1)
    losses = dsm_loss_per_sample(eps if parameterization == "noise" else score, sde, x0,
                                 t_min=t_min, parameterization=parameterization,
                                 weighting=weighting, generator=torch.Generator().manual_seed(2))
    mean, se = _mean_and_se(losses)
    expected = _expected_min(weighting, t_min, sde)
    assert abs(mean - expected) < 4 * se, (mean, expected, se)
    assert se < 0.02 * expected  # the check above is tight


@pytest.mark.parametrize("parameterization", ["noise", "score"])
@pytest.mark.parametrize("weighting", ["std2", "likelihood"])
def test_perturbed_score_pays_exactly_the_excess(parameterization, weighting):
    """loss(s* + δ) - loss(s*) = E[λ |δ|²] (the cross term vanishes): with common random
    numbers the paired difference pins it down."""
    t_min = 1e-2
    c = torch.tensor([0.3, -0.2], dtype=torch.float64)

    def shifted_score(x, t):
        return _exact_score(x, t) + c

    def wrap(score_fn):
        if parameterization == "score":
            return score_fn
        return lambda x, t: -_alpha_sigma(t)[1][:, None] * score_fn(x, t)

    x0 = _data(100_000, seed=3)
    kw = dict(t_min=t_min, parameterization=parameterization, weighting=weighting)
    exact = dsm_loss_per_sample(wrap(_exact_score), SDE, x0,
                                generator=torch.Generator().manual_seed(4), **kw)
    shifted = dsm_loss_per_sample(wrap(shifted_score), SDE, x0,
                                  generator=torch.Generator().manual_seed(4), **kw)
    gap, se = _mean_and_se(shifted - exact)
    t = torch.linspace(t_min, float(SDE.T), 100_001, dtype=torch.float64)
    lam = _alpha_sigma(t)[1] ** 2 if weighting == "std2" else _g2(t)
    expected = float(torch.trapezoid(lam, t)) / (float(SDE.T) - t_min) * float(c.square().mean())
    assert shifted.mean() > exact.mean()
    assert abs(gap - expected) < 4 * se, (gap, expected, se)


def test_noise_and_score_parameterisations_agree_and_reduce_sum():
    x0 = _data(64, seed=0)
    kw = dict(t_min=1e-3, weighting="likelihood")
    a = dsm_loss_per_sample(_exact_eps, SDE, x0, parameterization="noise",
                            generator=torch.Generator().manual_seed(0), **kw)
    b = dsm_loss_per_sample(_exact_score, SDE, x0, parameterization="score",
                            generator=torch.Generator().manual_seed(0), **kw)
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    s = dsm_loss_per_sample(_exact_eps, SDE, x0, parameterization="noise", reduce="sum",
                            generator=torch.Generator().manual_seed(0), **kw)
    assert torch.allclose(s, 2 * a)
    with pytest.warns(DeprecationWarning, match="'eps' is deprecated, use 'noise'"):
        old = dsm_loss_per_sample(_exact_eps, SDE, x0, parameterization="eps",
                                  generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(old, a, rtol=0, atol=0)  # the old name, the same loss


def test_images_and_labels_pass_through():
    seen = {}

    def net(x, t, y=None):
        seen["shapes"] = (x.shape, t.shape, None if y is None else y.shape)
        return torch.zeros_like(x)
    x0 = torch.randn(5, 1, 8, 8)
    loss_fn = make_dsm_loss(SDE, weighting="likelihood")
    loss = loss_fn(net, (x0, torch.arange(5)), torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert seen["shapes"] == ((5, 1, 8, 8), (5,), (5,))
    # ε̂ = 0 under λ = std² is the mean of |z|², i.e. about 1
    plain = dsm_loss(net, SDE, torch.randn(4000, 1, 8, 8),
                     generator=torch.Generator().manual_seed(1))
    assert plain.item() == pytest.approx(1.0, abs=0.01)


def test_stratified_times_fill_every_slot():
    t = sample_time(8, 0.0, 1.0, like=torch.zeros(1), stratified=True,
                    generator=torch.Generator().manual_seed(0))
    slots = torch.floor(t.sort().values * 8).long()
    assert slots.tolist() == list(range(8))
    t = sample_time(1000, 0.2, 0.5, like=torch.zeros(1, dtype=torch.float64))
    assert t.dtype == torch.float64 and t.min() >= 0.2 and t.max() <= 0.5


def test_bad_options_raise():
    x0 = torch.randn(4, 2)
    net = lambda x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="`parameterization` must be one of"):
        dsm_loss(net, SDE, x0, parameterization="x0")
    with pytest.raises(ValueError, match="weighting"):
        make_dsm_loss(SDE, weighting="uniform")
    with pytest.raises(ValueError, match="t_min"):
        dsm_loss(net, SDE, x0, t_min=2.0)


def test_short_training_approaches_the_minimum():
    """The loop + DSM loss + MLP fit a 2-D Gaussian: the excess over the exact score's loss
    (same noise draws) shrinks from ~0.7 to a few thousandths."""
    torch.manual_seed(0)
    net = MLP(2, width=64, depth=2, fourier_scale=4.0)
    x_eval = _data(50_000, seed=6).float()

    def excess():
        kw = dict(t_min=1e-3, parameterization="score")
        with torch.no_grad():
            a = dsm_loss(lambda x, t: -net(x, t) / _alpha_sigma(t.double())[1][:, None].float(),
                         SDE, x_eval, generator=torch.Generator().manual_seed(7), **kw)
            b = dsm_loss(lambda x, t: _exact_score(x.double(), t.double()).float(), SDE,
                         x_eval, generator=torch.Generator().manual_seed(7), **kw)
        return (a - b).item()
    before = excess()
    cfg = TrainConfig(steps=400, batch_size=256, lr=3e-3, log_every=100, progress=False)
    train(net, make_dsm_loss(SDE, t_min=1e-3), _data(4096, seed=5).float(), cfg)
    after = excess()
    print(f"excess before {before:.4f}, after {after:.5f}")
    assert before > 0.5
    assert 0 < after < 0.01, (before, after)
