"""Reference outputs of k-diffusion's samplers on the exact Gaussian-mixture oracle, for
tests/test_generative_sampler_peers.py (k-diffusion is never a dependency of sdeflow).

Regenerate (k-diffusion 0.1.1.post1 in a throwaway venv, torch from the project's):

    python3 -m venv /tmp/peervenv && /tmp/peervenv/bin/pip install --no-deps k-diffusion
    PYTHONPATH=.venv/lib/python3.11/site-packages:. /tmp/peervenv/bin/python \\
        tests/reference/kdiffusion_samplers.py tests/data/kdiffusion_samplers.json

k-diffusion's package ``__init__`` imports training dependencies (torchvision, skimage, ...)
that sampling does not need: only ``k_diffusion/sampling.py`` and ``utils.py`` are loaded, with
torchvision stubbed. Model: EDMSDE (alpha = 1, sigma = t), so k-diffusion's denoiser is
``D(x, sigma) = x + sigma^2 score(x, sigma)`` with the oracle's exact score, float64. The
stochastic samplers draw from a fixed bank of normals in call order (the same bank is handed
to sdeflow's samplers as ``noise=``).
"""
import importlib.util
import json
import sys
import types

import torch


def load_kdiffusion():
    class _Any(types.ModuleType):
        def __getattr__(self, k):
            if k.startswith("__"):
                raise AttributeError(k)
            return _Any(k)

    class _Stub:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "torchvision":
                return importlib.util.spec_from_loader(name, self)

        def create_module(self, spec):
            m = _Any(spec.name)
            m.__path__ = []
            return m

        def exec_module(self, m):
            pass

    sys.meta_path.insert(0, _Stub())
    spec = importlib.util.find_spec("k_diffusion")
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = pkg
    import k_diffusion.sampling as kds
    return kds


def setup():
    """The problem both sides solve (imported by the test too)."""
    from dynamics import EDMSDE, GaussianMixture
    gm = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [1.5, 1.0]],
                         [[[0.3, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.4]]])
    sde = EDMSDE(sigma_min=0.02, sigma_max=10.0)
    g = torch.Generator().manual_seed(2024)
    x_T = 10.0 * torch.randn(16, 2, generator=g, dtype=torch.float64)
    bank = torch.randn(40, 16, 2, generator=g, dtype=torch.float64)
    return gm, sde, x_T, bank


class Bank:
    """Normals in call order, for either side's noise-sampler signature."""

    def __init__(self, bank):
        self.bank, self.k = bank, 0

    def __call__(self, *args):
        z = self.bank[self.k]
        self.k += 1
        return z


def main(out):
    kds = load_kdiffusion()
    gm, sde, x_T, bank = setup()
    score = gm.score_fn(sde)
    calls = [0]

    def model(x, sigma):
        calls[0] += 1
        return x + sigma[:, None] ** 2 * score(x, sigma)

    sigmas = kds.get_sigmas_karras(12, 0.02, 10.0, rho=7.0).double()[:-1]   # 12 levels, 11 steps
    cases = {
        "dpmpp_2m": lambda: kds.sample_dpmpp_2m(model, x_T.clone(), sigmas, disable=True),
        "dpmpp_3m": lambda: kds.sample_dpmpp_3m_sde(model, x_T.clone(), sigmas, eta=0.0,
                                                    disable=True),
        "dpmpp_2m_sde": lambda: kds.sample_dpmpp_2m_sde(model, x_T.clone(), sigmas, eta=1.0,
                                                        noise_sampler=Bank(bank), disable=True),
        "dpmpp_2m_sde_heun": lambda: kds.sample_dpmpp_2m_sde(
            model, x_T.clone(), sigmas, eta=0.7, noise_sampler=Bank(bank), solver_type="heun",
            disable=True),
        "dpmpp_3m_sde": lambda: kds.sample_dpmpp_3m_sde(model, x_T.clone(), sigmas, eta=1.0,
                                                        noise_sampler=Bank(bank), disable=True),
        "dpmpp_2s_ancestral": lambda: kds.sample_dpmpp_2s_ancestral(
            model, x_T.clone(), sigmas, eta=1.0, noise_sampler=Bank(bank), disable=True),
        "dpmpp_2s_ancestral_eta0": lambda: kds.sample_dpmpp_2s_ancestral(
            model, x_T.clone(), sigmas, eta=0.0, noise_sampler=Bank(bank), disable=True),
        "dpmpp_sde": lambda: kds.sample_dpmpp_sde(model, x_T.clone(), sigmas, eta=1.0,
                                                  noise_sampler=Bank(bank), disable=True),
        "dpm_2": lambda: kds.sample_dpm_2(model, x_T.clone(), sigmas, disable=True),
        "dpm_2_ancestral": lambda: kds.sample_dpm_2_ancestral(
            model, x_T.clone(), sigmas, eta=1.0, noise_sampler=Bank(bank), disable=True),
        "lms": lambda: kds.sample_lms(model, x_T.clone(), sigmas, order=4, disable=True),
        "dpm_solver_3": lambda: dpm_solver_3(kds, model, x_T.clone(), sigmas),
        "dpm_adaptive_3": lambda: dpm_adaptive(kds, model, x_T.clone(), 3, 3 / 64, 1 / 128),
        "dpm_adaptive_2": lambda: dpm_adaptive(kds, model, x_T.clone(), 2, 1 / 128, 1 / 512),
    }
    cases["heun_churn"] = lambda: heun_churn(kds, model, x_T.clone(), sigmas)
    ref = {"sigmas": sigmas.tolist(), "kdiffusion": "0.1.1.post1", "cases": {}}
    for name, fn in cases.items():
        calls[0] = 0
        with torch.no_grad():
            x = fn()
        ref["cases"][name] = {"x": x.tolist(), "nfe": calls[0]}
        print(name, calls[0], float(x.abs().mean()))
    with open(out, "w") as f:
        json.dump(ref, f, indent=1)


def heun_churn(kds, model, x, sigmas):
    """Karras' Algorithm 2 as k-diffusion runs it: S_churn / N with N counting the final step
    to sigma = 0, churn noise from torch's global generator (seeded), levels in [0.05, 5]."""
    torch.manual_seed(5)
    return kds.sample_heun(model, x, torch.cat([sigmas, sigmas.new_zeros(1)]), s_churn=2.0,
                           s_tmin=0.05, s_tmax=5.0, disable=True)


def dpm_solver_3(kds, model, x, sigmas):
    """k-diffusion's third-order DPM-Solver step on every interval of the grid."""
    solver = kds.DPMSolver(model)
    for i in range(len(sigmas) - 1):
        x, _ = solver.dpm_solver_3_step(x, solver.t(sigmas[i]), solver.t(sigmas[i + 1]))
    return x


def dpm_adaptive(kds, model, x, order, rtol, atol):
    """k-diffusion's adaptive DPM-Solver from sigma 10 to 0.02. ``sample_dpm_adaptive`` would
    hold the end points in float32 (``torch.tensor(sigma)``); here they are float64, and the
    tolerances (which it keeps as float32 tensors) are exact binary fractions."""
    solver = kds.DPMSolver(model)
    lo, hi = (torch.tensor(v, dtype=torch.float64) for v in (0.02, 10.0))
    x, _ = solver.dpm_solver_adaptive(x, solver.t(hi), solver.t(lo), order=order, rtol=rtol,
                                      atol=atol)
    return x


if __name__ == "__main__":
    main(sys.argv[1])
