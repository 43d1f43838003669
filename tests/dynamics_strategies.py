"""Shared hypothesis strategies and helpers for the dynamics tests (a helper module, not a
test module; tests/test_dynamics_strategies.py checks the strategies themselves).

Random SDE parameters cover every class; random Gaussian mixtures have well-conditioned
covariances (eigenvalues in [0.05, 2]) so all densities are resolvable in float64.
"""
from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

import dynamics as D

F64 = torch.float64
SDE_KINDS = ("vp", "ve", "subvp", "cosine", "edm")


def make_sde(kind: str, draw) -> D.LinearSDE:
    """A random instance of SDE class ``kind`` (``draw`` is hypothesis' draw)."""
    if kind in ("vp", "subvp"):
        b0 = draw(st.floats(0.01, 2.0))
        b1 = b0 + draw(st.floats(0.0, 30.0))
        T = draw(st.sampled_from([1.0, 0.5, 2.0]))
        cls = D.VPSDE if kind == "vp" else D.SubVPSDE
        return cls(beta_min=b0, beta_max=b1, T=T)
    if kind == "ve":
        smin = draw(st.floats(1e-3, 0.5))
        smax = smin * draw(st.floats(2.0, 2000.0))
        T = draw(st.sampled_from([1.0, 0.5, 2.0]))
        return D.VESDE(sigma_min=smin, sigma_max=smax, T=T)
    if kind == "cosine":
        return D.CosineVPSDE(s=draw(st.floats(1e-3, 0.05)), beta_max=draw(st.floats(20.0, 2000.0)))
    smin = draw(st.floats(1e-3, 0.1))
    return D.EDMSDE(sigma_min=smin, sigma_max=draw(st.floats(1.0, 100.0)))


@st.composite
def sdes(draw, kinds=SDE_KINDS):
    return make_sde(draw(st.sampled_from(kinds)), draw)


def default_sde(kind: str) -> D.LinearSDE:
    return {"vp": D.VPSDE, "ve": D.VESDE, "subvp": D.SubVPSDE, "cosine": D.CosineVPSDE,
            "edm": D.EDMSDE}[kind]()


def random_mixture(gen: torch.Generator, K: int, d: int, spread: float = 2.0,
                   eig_lo: float = 0.05, eig_hi: float = 2.0) -> D.GaussianMixture:
    """Random mixture: Dirichlet-ish weights, means in [-spread, spread], random rotations."""
    w = torch.rand(K, generator=gen, dtype=F64) + 0.2
    w = w / w.sum()
    mu = (2 * torch.rand(K, d, generator=gen, dtype=F64) - 1) * spread
    q, _ = torch.linalg.qr(torch.randn(K, d, d, generator=gen, dtype=F64))
    lam = eig_lo + (eig_hi - eig_lo) * torch.rand(K, d, generator=gen, dtype=F64)
    cov = q @ torch.diag_embed(lam) @ q.transpose(-1, -2)
    return D.GaussianMixture(w, mu, 0.5 * (cov + cov.transpose(-1, -2)))


@st.composite
def mixtures(draw, max_k: int = 3, dims=(1, 2, 3)):
    seed = draw(st.integers(0, 2 ** 31 - 1))
    K = draw(st.integers(1, max_k))
    d = draw(st.sampled_from(dims))
    return random_mixture(torch.Generator().manual_seed(seed), K, d)


def times_in(sde, gen: torch.Generator, n: int, lo: float = 0.02, hi: float = 1.0) -> torch.Tensor:
    """n random times in [lo T, hi T]."""
    u = lo + (hi - lo) * torch.rand(n, generator=gen, dtype=F64)
    return u * sde.T


def mmd2(x: torch.Tensor, y: torch.Tensor, h: float) -> float:
    """Unbiased squared MMD with an RBF kernel of bandwidth h."""
    def k(a, b):
        return torch.exp(-torch.cdist(a, b).square() / (2 * h * h))
    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
                 + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())


def sample_cov_bounds(x: torch.Tensor, n_se: float = 5.0):
    """Sample mean, covariance, and n_se standard errors of each (from the sample's moments)."""
    n = x.shape[0]
    m = x.mean(0)
    xc = x - m
    cov = xc.T @ xc / (n - 1)
    se_m = n_se * torch.sqrt(cov.diagonal() / n)
    prod = xc[:, :, None] * xc[:, None, :]
    se_c = n_se * prod.std(0) / math.sqrt(n)
    return m, cov, se_m, se_c
