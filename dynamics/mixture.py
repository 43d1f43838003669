"""Gaussian-mixture oracle: exact samples, density and score of the data and of every time-t
marginal of a linear SDE (or interpolation path).

If ``x0 ~ sum_k w_k N(mu_k, Sigma_k)`` and ``x_t | x0 ~ N(alpha(t) x0, sigma(t)^2 I)`` then
``p_t = sum_k w_k N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I)`` exactly. With the eigen-
decompositions ``Sigma_k = U_k diag(lam_k) U_k^T`` computed once, every time-t covariance is
``U_k diag(alpha^2 lam_k + sigma^2) U_k^T``: log-densities, scores and posterior means cost
O(B K d^2) per call for any (per-row) times, with no factorisation in the loop.

The path is any `dynamics.GaussianPath` (every SDE and flow-matching path; its ``T`` validates
t). Data points are rows of ``x`` of shape
``(B, d)`` (or ``(B, *event)`` with ``prod(event) = d``, flattened internally).
"""
from __future__ import annotations

import math
import operator
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

from solvers.errors import describe

from .errors import InputError
from .broadcast import TimeLike, broadcast_time
from .checks import check_generator, check_time
from .gaussian_path import GaussianPath, check_path

Tensor = torch.Tensor
ArrayLike = Union[Tensor, Any]

__all__ = ["GaussianMixture"]


def _to_tensor(name: str, v: ArrayLike) -> Tensor:
    try:
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, Tensor) for x in v):
            return torch.stack(list(v))  # e.g. a list of per-component covariance matrices
        t = torch.as_tensor(v)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"`{name}` must be array-like; got {describe(v)}") from None
    return t


def _check_count(n: int) -> int:
    """``n`` as an int >= 1 (a number of samples), or a clear error."""
    try:
        k = None if isinstance(n, bool) else operator.index(n)
    except TypeError:
        k = None
    if k is None or k < 1:
        raise InputError(f"`n` must be an integer >= 1 (number of samples); "
                         f"got {describe(n)}")
    return k


#: the error of every density, score and posterior of a singular mixture where sigma(t) = 0
_SINGULAR = ("`covs` is singular, so the data mixture has no density (its score, log-density "
             "and posteriors are undefined where sigma(t) = 0); use a time with sigma(t) > 0 or "
             "positive definite covs")


class GaussianMixture:
    """Mixture ``sum_k w_k N(mu_k, Sigma_k)`` in R^d and its exact diffused marginals.

    Args:
        weights: ``(K,)`` non-negative, summing to 1.
        means: ``(K, d)``.
        covs: ``(K, d, d)`` symmetric positive semi-definite (positive definite where the data
            density itself is needed: `log_prob`, `score`, or times with sigma(t) = 0; every
            density, score and posterior of a singular mixture raises the same
            `InputError` there).
    """

    def __init__(self, weights: ArrayLike, means: ArrayLike, covs: ArrayLike) -> None:
        w, mu, cov = (_to_tensor(n, v) for n, v in
                      (("weights", weights), ("means", means), ("covs", covs)))
        dtype = torch.promote_types(torch.promote_types(w.dtype, mu.dtype), cov.dtype)
        if not dtype.is_floating_point:
            dtype = torch.get_default_dtype()
        w, mu, cov = (v.to(dtype=dtype, device=w.device) for v in (w, mu, cov))
        if w.dim() != 1 or w.numel() == 0:
            raise InputError(f"`weights` must have shape (K,) with K >= 1; "
                             f"got shape {tuple(w.shape)}")
        K = w.shape[0]
        if mu.dim() != 2 or mu.shape[0] != K or mu.shape[1] == 0:
            raise InputError(
                f"`means` must have shape (K, d) = ({K}, d) matching `weights`; "
                f"got shape {tuple(mu.shape)}")
        d = mu.shape[1]
        if cov.shape != (K, d, d):
            raise InputError(
                f"`covs` must have shape (K, d, d) = ({K}, {d}, {d}) matching `weights` and "
                f"`means`; got shape {tuple(cov.shape)}")
        for name, v in (("weights", w), ("means", mu), ("covs", cov)):
            if not bool(torch.isfinite(v).all()):
                raise InputError(f"`{name}` must be finite; got non-finite entries")
        if bool((w < 0).any()) or abs(float(w.sum()) - 1.0) > 1e-6:
            raise InputError(f"`weights` must be non-negative and sum to 1; got "
                             f"{w.tolist()} (sum {float(w.sum()):.8g})")
        scale = float(cov.abs().amax()) if cov.numel() else 0.0
        tol = 10 * d * torch.finfo(dtype).eps * max(scale, 1.0)
        asym = float((cov - cov.transpose(-1, -2)).abs().amax())
        if asym > tol:
            raise InputError(f"`covs` must be symmetric; max |C - C^T| = {asym:.3g}")
        lam, U = torch.linalg.eigh(0.5 * (cov + cov.transpose(-1, -2)))
        if bool((lam < -tol).any()):
            k = int(lam.amin(-1).argmin())
            raise InputError(
                f"`covs` must be positive semi-definite; component {k} has eigenvalue "
                f"{float(lam[k].min()):.6g}")
        self.weights, self.means, self.covs = w, mu, cov
        self._lam = lam.clamp(min=0.0)
        self._U = U
        self._singular = bool((self._lam <= tol).any())
        self._cache: Dict[Tuple[torch.dtype, torch.device], Tuple[Tensor, ...]] = {}

    # ---- basic properties
    @property
    def n_components(self) -> int:
        return self.weights.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> Tensor:
        """Mixture mean ``sum_k w_k mu_k``, shape (d,)."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Mixture covariance ``sum_k w_k (Sigma_k + mu_k mu_k^T) - m m^T``, shape (d, d)."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs
                              + self.means[:, :, None] * self.means[:, None, :])
        return second - m[:, None] * m[None, :]

    def component(self, k: int) -> "GaussianMixture":
        """Component k alone (the class-conditional distribution p(x | y = k))."""
        if not (0 <= int(k) < self.n_components):
            raise InputError(f"`k` must be in [0, {self.n_components}); got {k!r}")
        one = torch.ones(1, dtype=self.weights.dtype, device=self.weights.device)
        return GaussianMixture(one, self.means[k:k + 1], self.covs[k:k + 1])

    def condition(self, values: ArrayLike, mask: ArrayLike) -> "GaussianMixture":
        """The exact conditional ``p(x[~mask] | x[mask] = values[mask])``, a mixture over the
        unknown coordinates (in their order): component k keeps weight
        ``w_k N(values_K; mu_kK, Sigma_kKK)`` (renormalised), mean
        ``mu_kU + Sigma_kUK Sigma_kKK^-1 (values_K - mu_kK)`` and covariance
        ``Sigma_kUU - Sigma_kUK Sigma_kKK^-1 Sigma_kKU``.

        ``values``: ``(d,)`` (entries outside the mask are ignored); ``mask``: ``(d,)`` bool,
        True = known, with at least one unknown coordinate. ``Sigma_kKK`` must be positive
        definite.
        """
        known, unknown, y = self._split(values, mask)
        mu, cov = self.means, self.covs
        if known.numel() == 0:
            return GaussianMixture(self.weights, mu, cov)
        s_kk = cov[:, known][:, :, known]
        s_uk = cov[:, unknown][:, :, known]
        chol, info = torch.linalg.cholesky_ex(s_kk)
        if bool((info != 0).any()):
            raise InputError("`covs` restricted to the known coordinates must be "
                             "positive definite to condition on them")
        r = y - mu[:, known]                                               # (K, dk)
        sol = torch.cholesky_solve(r[:, :, None], chol)[:, :, 0]          # S_KK^-1 r
        gain = torch.cholesky_solve(s_uk.transpose(1, 2), chol)           # S_KK^-1 S_KU
        mean = mu[:, unknown] + torch.einsum("kuj,kj->ku", s_uk, sol)
        c = cov[:, unknown][:, :, unknown] - s_uk @ gain
        log_n = -0.5 * ((r * sol).sum(-1) + 2 * torch.log(torch.diagonal(
            chol, dim1=-2, dim2=-1)).sum(-1) + known.numel() * math.log(2 * math.pi))
        w = torch.softmax(torch.log(self.weights) + log_n, dim=0)
        return GaussianMixture(w, mean, 0.5 * (c + c.transpose(1, 2)))

    def __repr__(self) -> str:
        return f"GaussianMixture(n_components={self.n_components}, dim={self.dim})"

    # ---- sampling
    def sample(self, n: int, generator: Optional[torch.Generator] = None,
               return_labels: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """``n`` samples ``(n, d)`` (and their component labels ``(n,)`` if requested)."""
        n = _check_count(n)
        check_generator(generator)
        w, mu = self.weights, self.means
        dev = w.device if generator is None else generator.device
        labels = torch.multinomial(w.to(dev), int(n), replacement=True,
                                   generator=generator).to(w.device)
        z = torch.randn((int(n), self.dim), generator=generator, dtype=w.dtype,
                        device=dev).to(w.device)
        root = self._U * self._lam.sqrt()[:, None, :]           # U diag(sqrt(lam))
        x = mu[labels] + torch.einsum("nij,nj->ni", root[labels], z)
        return (x, labels) if return_labels else x

    def marginal_sample(self, path: GaussianPath, t: TimeLike, n: int,
                        generator: Optional[torch.Generator] = None) -> Tensor:
        """``n`` exact samples of p_t: ``alpha(t) x0 + sigma(t) z`` with fresh x0 and z."""
        self._check_path(path, t)
        x0 = self.sample(n, generator)
        dev = x0.device if generator is None else generator.device
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=dev).to(x0.device)
        a, s = path.coefs(x0, t)
        return a * x0 + s * z

    def marginal(self, path: GaussianPath, t: float) -> "GaussianMixture":
        """The exact marginal p_t at one time t, as a GaussianMixture."""
        self._check_path(path, t)
        if isinstance(t, Tensor) and t.numel() != 1:
            raise InputError(f"`t` must be a single time here; got {describe(t)}")
        tt = torch.as_tensor(float(t), dtype=self.weights.dtype, device=self.weights.device)
        a, s = path.alpha(tt).to(tt), path.sigma(tt).to(tt)
        eye = torch.eye(self.dim, dtype=tt.dtype, device=tt.device)
        return GaussianMixture(self.weights, a * self.means, a ** 2 * self.covs + s ** 2 * eye)

    # ---- data density
    def log_prob(self, x: Tensor) -> Tensor:
        """log p_0(x) of the data mixture, shape (B,)."""
        return torch.logsumexp(self._log_joint(x, None, None, "log_prob"), dim=-1)

    def score(self, x: Tensor) -> Tensor:
        """grad_x log p_0(x), x's shape."""
        return self._score(x, None, None, "score")

    # ---- exact time-t marginals
    def marginal_log_prob(self, path: GaussianPath, x: Tensor, t: TimeLike,
                          check: bool = True) -> Tensor:
        """log p_t(x), shape (B,). ``t``: number, 0-dim or (B,) (per-row times)."""
        a, s = self._time_coefs(path, x, t, check)
        return torch.logsumexp(self._log_joint(x, a, s, "marginal_log_prob"), dim=-1)

    def marginal_score(self, path: GaussianPath, x: Tensor, t: TimeLike,
                       check: bool = True) -> Tensor:
        """grad_x log p_t(x), x's shape."""
        a, s = self._time_coefs(path, x, t, check)
        return self._score(x, a, s, "marginal_score")

    def marginal_denoise(self, path: GaussianPath, x: Tensor, t: TimeLike,
                         check: bool = True) -> Tensor:
        """Posterior mean ``E[x0 | x_t = x]``, x's shape (well defined also where alpha = 0)."""
        a, s = self._time_coefs(path, x, t, check)
        xf, shape = self._flat(x, "marginal_denoise")
        _, mu, lam, U = self._params_like(xf)
        log_joint, z, var = self._terms(xf, a, s)
        r = torch.softmax(log_joint, dim=-1)                          # (B, K)
        a3 = a.reshape(-1, 1, 1)
        post = mu[None] + torch.einsum("kij,bkj->bki", U, a3 * lam[None] * z / var)
        return torch.einsum("bk,bki->bi", r, post).reshape(shape)

    def posterior_log_prob(self, path: GaussianPath, x: Tensor, t: TimeLike,
                           check: bool = True) -> Tensor:
        """log p_t(y = k | x) of the Bayes-optimal time-t classifier, shape (B, K)."""
        a, s = self._time_coefs(path, x, t, check)
        return torch.log_softmax(self._log_joint(x, a, s, "posterior_log_prob"), dim=-1)

    # ---- callables for solvers and samplers (no value checks, no host syncs; a singular
    # mixture alone checks sigma(t) > 0 on every call: its density does not exist there)
    def score_fn(self, path: GaussianPath) -> Callable[[Tensor, Tensor], Tensor]:
        """``score_fn(x, t)`` = exact score of p_t, for reverse SDEs and probability flows."""
        self._check_path(path, None)
        return lambda x, t: self.marginal_score(path, x, t, check=False)

    def log_prob_fn(self, path: GaussianPath) -> Callable[[Tensor, Tensor], Tensor]:
        """``log_prob_fn(x, t)`` = exact log p_t(x), shape (B,)."""
        self._check_path(path, None)
        return lambda x, t: self.marginal_log_prob(path, x, t, check=False)

    def classifier_log_prob_fn(self, path: GaussianPath, y: Union[int, Tensor]
                               ) -> Callable[[Tensor, Tensor], Tensor]:
        """``(x, t) -> log p_t(y | x)``, shape (B,), for labels ``y`` (int or (B,) long)."""
        self._check_path(path, None)

        def fn(x: Tensor, t: Tensor) -> Tensor:
            lp = self.posterior_log_prob(path, x, t, check=False)
            yy = torch.as_tensor(y, device=lp.device).expand(lp.shape[0])
            return lp.gather(1, yy[:, None].long())[:, 0]
        return fn

    def observation_log_prob_fn(self, path: GaussianPath, known: ArrayLike, mask: ArrayLike
                                ) -> Callable[[Tensor, Tensor], Tensor]:
        """``(x, t) -> log p(x0[mask] = known[mask] | x_t = x)``, shape (B,): the exact
        observation likelihood of inpainting (for `dynamics.ClassifierGuidance`, whose scale-1
        score is then the exact conditional score of ``p_t(x_t | x0[mask] = known[mask])``).

        ``p(x0 | x_t)`` is the mixture of the components' Gaussian posteriors (covariance
        ``U diag(lam sigma^2 / (alpha^2 lam + sigma^2)) U^T``, weights `posterior_log_prob`),
        marginalised onto the known coordinates. ``known``: ``(d,)`` or per row ``(B, d)``;
        ``mask``: ``(d,)`` bool, True = known, shared by all rows. Needs ``sigma(t) > 0`` and
        positive definite ``covs``.
        """
        self._check_path(path, None)
        known_idx, _, y = self._split(known, mask, per_row=True)

        def fn(x: Tensor, t: Tensor) -> Tensor:
            xf, _ = self._flat(x, "observation_log_prob_fn")
            tb = broadcast_time(t, xf)
            a, s = path.alpha(tb).to(xf), path.sigma(tb).to(xf)
            _, mu, lam, U = self._params_like(xf)
            log_joint, z, var = self._terms(xf, a, s)
            a3, s3 = a.reshape(-1, 1, 1), s.reshape(-1, 1, 1)
            uk = U[:, known_idx]                                          # (K, dk, d)
            mean = mu[None][:, :, known_idx] + torch.einsum(
                "kij,bkj->bki", uk, a3 * lam[None] * z / var)            # (B, K, dk)
            post = lam[None] * s3 ** 2 / var                              # (B, K, d)
            cov = torch.einsum("kij,bkj,klj->bkil", uk, post, uk)         # (B, K, dk, dk)
            r = y.to(xf).unsqueeze(-2) - mean                             # (B, K, dk)
            chol = torch.linalg.cholesky(cov)
            sol = torch.linalg.solve_triangular(chol, r[..., None], upper=False)[..., 0]
            log_n = -0.5 * ((sol ** 2).sum(-1) + 2 * torch.log(torch.diagonal(
                chol, dim1=-2, dim2=-1)).sum(-1) + len(known_idx) * math.log(2 * math.pi))
            return torch.logsumexp(torch.log_softmax(log_joint, -1) + log_n, dim=-1)
        return fn

    # ---- internals
    def _split(self, values: ArrayLike, mask: ArrayLike,
               per_row: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
        """(known indices, unknown indices, values at the known indices) of a ``(d,)`` mask."""
        d = self.dim
        m = torch.as_tensor(mask, device=self.means.device)
        if m.dtype != torch.bool or m.shape != (d,):
            raise InputError(f"`mask` must be a bool tensor of shape ({d},) (True = "
                             f"known); got {describe(mask)}")
        v = _to_tensor("values", values).to(dtype=self.means.dtype, device=self.means.device)
        shapes = "(d,) or (B, d)" if per_row else "(d,)"
        if v.shape[-1:] != (d,) or v.dim() > (2 if per_row else 1):
            raise InputError(f"the known values must have shape {shapes} with d = {d}; "
                             f"got shape {tuple(v.shape)}")
        if bool(m.all()):
            raise InputError("`mask` marks every coordinate known; nothing to sample")
        known, unknown = torch.nonzero(m)[:, 0], torch.nonzero(~m)[:, 0]
        return known, unknown, v[..., known]

    def _check_path(self, path: GaussianPath, t: Optional[TimeLike]) -> None:
        check_path(path)
        if t is not None:
            check_time(t, float(path.T))

    def _time_coefs(self, path: GaussianPath, x: Tensor, t: TimeLike,
                    check: bool) -> Tuple[Tensor, Tensor]:
        if check:
            self._check_path(path, t)
        xf, _ = self._flat(x, "x")
        tb = broadcast_time(t, xf)
        a, s = path.alpha(tb).to(xf), path.sigma(tb).to(xf)
        if self._singular and bool((s <= 0).any()):  # one host sync, singular mixtures only
            raise InputError(_SINGULAR)
        return a, s

    def _flat(self, x: Tensor, name: str) -> Tuple[Tensor, torch.Size]:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2 \
                or x[0].numel() != self.dim:
            raise InputError(
                f"`x` of {name} must be a floating-point tensor of shape (B, {self.dim}) (or "
                f"(B, *event) with {self.dim} elements per row); got {describe(x)}")
        return x.reshape(x.shape[0], self.dim), x.shape

    def _params_like(self, x: Tensor) -> Tuple[Tensor, ...]:
        key = (x.dtype, x.device)
        if key not in self._cache:
            self._cache[key] = tuple(v.to(dtype=x.dtype, device=x.device) for v in
                                     (self.weights, self.means, self._lam, self._U))
        return self._cache[key]

    def _terms(self, xf: Tensor, a: Optional[Tensor],
               s: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """(log w_k + log N_k (B, K), eigen-coordinates z (B, K, d), variances (B|1, K, d))."""
        w, mu, lam, U = self._params_like(xf)
        if a is None:
            if self._singular:
                raise InputError(_SINGULAR)
            y = xf[:, None, :] - mu[None]
            var = lam[None]
        else:
            a3, s3 = a.reshape(-1, 1, 1), s.reshape(-1, 1, 1)
            y = xf[:, None, :] - a3 * mu[None]
            var = a3 ** 2 * lam[None] + s3 ** 2
        z = torch.einsum("kij,bki->bkj", U, y)
        d = self.dim
        log_n = -0.5 * (d * math.log(2 * math.pi) + torch.log(var).sum(-1)
                        + (z ** 2 / var).sum(-1))
        return torch.log(w)[None] + log_n, z, var

    def _log_joint(self, x: Tensor, a: Optional[Tensor], s: Optional[Tensor],
                   name: str) -> Tensor:
        xf, _ = self._flat(x, name)
        return self._terms(xf, a, s)[0]

    def _score(self, x: Tensor, a: Optional[Tensor], s: Optional[Tensor], name: str) -> Tensor:
        xf, shape = self._flat(x, name)
        _, _, _, U = self._params_like(xf)
        log_joint, z, var = self._terms(xf, a, s)
        r = torch.softmax(log_joint, dim=-1)
        return -torch.einsum("bk,kij,bkj->bi", r, U, z / var).reshape(shape)
