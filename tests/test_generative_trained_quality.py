"""A 2-D score model trained in seconds samples the data distribution (PC and ODE).

Calibration, measured in the test at the same sample size: the data-vs-data MMD (noise
floor) and the MMD of a Gaussian fitted to the data (what a model that learnt nothing but
two moments achieves). A trained model must sit far below the Gaussian fit.
"""
import pytest
import torch

from generative.generate import generate
from generative.data import load_data
from generative.metrics import gaussian_fit_sample, mmd_rbf
from generative.models import make_meta, train_model
from generative.train import TrainConfig


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = load_data("8gaussians")
    meta = make_meta("score", data, net_kwargs={"width": 128, "depth": 3}, sde="vp")
    cfg = TrainConfig(steps=1500, batch_size=256, lr=2e-3, ema_decay=0.99, log_every=500,
                      ckpt_every=1500, progress=False, seed=0)
    result = train_model(data, meta, cfg, tmp_path_factory.mktemp("run"))
    result.ema.copy_to(result.model)
    return data, meta, result.model.eval().requires_grad_(False)


def _references(data, n=1000):
    g = torch.Generator().manual_seed(1)
    pool = data.test if data.test.shape[0] >= 2 * n else data.train
    noise = max(mmd_rbf(pool[torch.randperm(pool.shape[0], generator=g)[:n]],
                        pool[torch.randperm(pool.shape[0], generator=g)[:n]]) for _ in range(5))
    gauss = mmd_rbf(gaussian_fit_sample(data.train, n, generator=g), pool[:n])
    return pool[:n], noise, gauss


@pytest.mark.parametrize("sampler,kw", [("pc", {"nfe": 400}), ("ode", {"nfe": None})])
def test_trained_model_samples_the_data(trained, sampler, kw):
    data, meta, model = trained
    ref, noise, gauss = _references(data)
    x, _ = generate(model, meta, 1000, seed=0, sampler=sampler, **kw)
    m = mmd_rbf(x, ref)
    assert torch.isfinite(x).all()
    bound = noise + 0.1 * gauss
    assert m < bound, (sampler, m, noise, gauss)
