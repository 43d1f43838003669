"""Linear inverse problems ``y = A x0 + sigma_y n`` solved with a score model's samplers.

Operators (`LinearOperator`: ``A(x)`` on ``(B, *event)`` and its transpose ``A.T(y)``): a mask
(inpainting), a grayscale map (colorization), average pooling (super-resolution), a matrix,
or any callable with its transpose. Three ways to sample ``x0 | y``:

- exact, for the Gaussian-mixture oracle: `mixture_posterior` is the closed-form posterior
  (again a mixture), whose ``score_fn(sde)`` is the exact conditional score
  ``grad log p_t(x_t | y)``, so any sampler draws exact posterior samples (up to its
  discretisation);
- replacement (`replacement_callback`, a sampler callback), for operators with orthogonal
  rows (``A A^T = c I``: masks, grayscale, average pooling): at every grid point the state's
  component in A's row space is replaced by a draw of the forward kernel of ``y``,
  ``A x_t <- alpha y + sigma sqrt(c) eps``. For the grayscale map this is the decomposition of
  Song et al. (2021) for colorization (an orthogonal basis whose first vector is the
  normalised gray direction, replacement in that coordinate). Approximate: it ignores how
  ``y`` informs the complement and ``sigma_y``;
- guidance (`pigdm_log_prob_fn`, for `dynamics.ClassifierGuidance`): the observation
  likelihood with ``p(x0 | x_t)`` replaced by ``N(x0_hat, r_t^2 I)`` around Tweedie's
  denoiser (PiGDM, Song et al. 2023; DPS-like, through autograd of the score), isotropic in
  A's row space (exact covariance for ``A A^T = c I``). Approximate except for Gaussian data.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from dynamics import GaussianMixture, GaussianPath, call_score, tweedie
from solvers.errors import describe

from .errors import InputError

Tensor = torch.Tensor

__all__ = ["LinearOperator", "mask_operator", "grayscale_operator", "avgpool_operator",
           "matrix_operator", "mixture_posterior", "replacement_callback", "pigdm_log_prob_fn"]


class LinearOperator:
    """``y = A x`` on batches ``(B, *event)`` with the transpose ``A.T(y)``; ``gram`` is ``c``
    when ``A A^T = c I`` (None: not known to be)."""

    def __init__(self, forward: Callable[[Tensor], Tensor], transpose: Callable[[Tensor], Tensor],
                 name: str = "A", gram: Optional[float] = None) -> None:
        if not callable(forward) or not callable(transpose):
            raise InputError(f"`forward` and `transpose` must be callables; got "
                             f"{describe(forward)} and {describe(transpose)}")
        self.forward, self.transpose, self.name, self.gram = forward, transpose, name, gram

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def T(self, y: Tensor) -> Tensor:
        """``A^T y``."""
        return self.transpose(y)

    def matrix(self, event_shape: Sequence[int], dtype: torch.dtype = torch.float64) -> Tensor:
        """The dense ``(m, d)`` matrix of A on events of ``event_shape`` (d columns)."""
        d = math.prod(event_shape)
        eye = torch.eye(d, dtype=dtype).reshape(d, *event_shape)
        return self.forward(eye).reshape(d, -1).T

    def __repr__(self) -> str:
        return f"LinearOperator({self.name})"


def mask_operator(mask: Tensor) -> LinearOperator:
    """Inpainting: ``y`` the entries of x where ``mask`` (event-shaped, True = observed)."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or not bool(mask.any()):
        raise InputError(f"`mask` must be a bool tensor of the event shape with at least one "
                         f"True (observed) entry; got {describe(mask)}")

    def transpose(y: Tensor) -> Tensor:
        out = y.new_zeros((y.shape[0], *mask.shape))
        out[:, mask.to(y.device)] = y
        return out
    return LinearOperator(lambda x: x[:, mask.to(x.device)], transpose, "mask", gram=1.0)


def grayscale_operator(weights: Sequence[float] = (0.299, 0.587, 0.114)) -> LinearOperator:
    """Colorization: ``(B, C, H, W) -> (B, 1, H, W)``, ``y = sum_c w_c x_c`` (ITU-R 601 luma
    weights by default)."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    if w.dim() != 1 or len(w) < 2 or not bool(torch.isfinite(w).all()) or float(w.norm()) == 0:
        raise InputError(f"`weights` must be >= 2 finite channel weights, not all 0; got "
                         f"{describe(weights)}")

    def wt(x: Tensor) -> Tensor:
        return w.to(x).reshape(1, -1, *([1] * (x.dim() - 2)))
    return LinearOperator(lambda x: (x * wt(x)).sum(1, keepdim=True), lambda y: y * wt(y),
                          "grayscale", gram=float(w.square().sum()))


def avgpool_operator(factor: int) -> LinearOperator:
    """Super-resolution: ``(B, C, H, W) -> (B, C, H/f, W/f)``, the mean of each f x f block."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise InputError(f"`factor` must be an integer >= 2; got {factor!r}")
    f = factor
    return LinearOperator(lambda x: F.avg_pool2d(x, f),
                          lambda y: F.interpolate(y, scale_factor=f, mode="nearest") / f ** 2,
                          f"avgpool{f}", gram=1.0 / f ** 2)


def matrix_operator(M: Tensor, event_shape: Sequence[int]) -> LinearOperator:
    """``y = M x`` on flattened events: ``M`` ``(m, d)``, ``d = prod(event_shape)``."""
    if not isinstance(M, Tensor) or M.dim() != 2 or M.shape[1] != math.prod(event_shape):
        raise InputError(f"`M` must be a (m, {math.prod(event_shape)}) tensor for events of "
                         f"shape {tuple(event_shape)}; got {describe(M)}")
    shape = tuple(event_shape)
    return LinearOperator(lambda x: x.reshape(len(x), -1) @ M.to(x).T,
                          lambda y: (y @ M.to(y)).reshape(len(y), *shape), "matrix")


def mixture_posterior(mix: GaussianMixture, A: LinearOperator, y: Tensor, sigma_y: float,
                      event_shape: Optional[Sequence[int]] = None) -> GaussianMixture:
    """The exact posterior ``p(x0 | y)`` of the mixture prior under ``y = A x0 + sigma_y n``
    (one observation ``y``, A's output shape; ``event_shape`` the shape A acts on, default
    the mixture's flat dimension): component k has weight ``w_k N(y; A mu_k,
    S_k)``, mean ``mu_k + K_k (y - A mu_k)`` and covariance ``Sigma_k - K_k A Sigma_k`` with
    ``S_k = A Sigma_k A^T + sigma_y^2 I``, ``K_k = Sigma_k A^T S_k^-1`` (computed in float64)."""
    if isinstance(sigma_y, bool) or not isinstance(sigma_y, (int, float)) or not sigma_y > 0:
        raise InputError(f"`sigma_y` must be a number > 0; got {sigma_y!r}")
    f64 = torch.float64
    mu, cov, w = mix.means.to(f64), mix.covs.to(f64), mix.weights.to(f64)
    d = mu.shape[1]
    M = A.matrix((d,) if event_shape is None else tuple(event_shape), f64)
    if M.shape[1] != d:
        raise InputError(f"`event_shape` must have the mixture's {d} elements; got "
                         f"{event_shape!r}")
    yv = torch.as_tensor(y, dtype=f64).reshape(-1)
    if yv.numel() != M.shape[0]:
        raise InputError(f"`y` must have A's output size {M.shape[0]}; got {describe(y)}")
    S = M @ cov @ M.T + sigma_y ** 2 * torch.eye(M.shape[0], dtype=f64)
    K = cov @ M.T @ torch.linalg.inv(S)
    r = yv - mu @ M.T                                               # (K, m) residuals
    means = mu + (K @ r.unsqueeze(-1)).squeeze(-1)
    covs = cov - K @ M @ cov
    covs = (covs + covs.transpose(-1, -2)) / 2
    logw = torch.log(w) + torch.distributions.MultivariateNormal(
        torch.zeros_like(r), S).log_prob(r)
    return GaussianMixture(torch.softmax(logw, 0), means, covs)


def replacement_callback(sde: GaussianPath, A: LinearOperator, y: Tensor,
                         generator: Optional[torch.Generator] = None
                         ) -> Callable[[int, Tensor, Tensor, Any], Tensor]:
    """A sampler ``callback`` that puts A's row-space component of the state on the forward
    kernel of ``y`` at every grid point: ``x += A^T (alpha y + sigma sqrt(c) eps - A x) / c``
    (``A A^T = c I`` required: ``A.gram``). ``y``: ``(B, *obs)`` or one ``(*obs)``."""
    if A.gram is None:
        raise InputError(f"replacement needs an operator with orthogonal rows (A A^T = c I: "
                         f"mask, grayscale, avgpool); got {A!r}")
    c = A.gram

    def callback(i: int, t: Tensor, x: Tensor, denoised: Any = None) -> Tensor:
        a, s = sde.alpha(t).to(x), sde.sigma(t).to(x)
        ax = A(x)
        target = a * y.to(ax).expand_as(ax) + s * math.sqrt(c) * torch.randn(
            ax.shape, generator=generator, dtype=ax.dtype, device=ax.device)
        return x + A.T(target - ax) / c
    return callback


def pigdm_log_prob_fn(path: GaussianPath, score_fn: Callable[[Tensor, Tensor], Tensor],
                      A: LinearOperator, y: Tensor, sigma_y: float,
                      data_var: Optional[float] = None) -> Callable[[Tensor, Tensor], Tensor]:
    """``(x, t) -> log p_hat(y | x_t = x)``, shape (B,), for `dynamics.ClassifierGuidance`:
    ``-|y - A x0_hat|^2 / (2 (sigma_y^2 + c r_t^2))`` with Tweedie's ``x0_hat`` and
    ``r_t^2 = s^2 / (1 + s^2 / data_var)``, ``s = sigma / alpha`` (``data_var=None``: a flat
    prior, ``r_t^2 = s^2``); ``c = A.gram`` (1 when unknown). Approximate (see the module
    docstring); its gradient differentiates through ``score_fn``."""
    if isinstance(sigma_y, bool) or not isinstance(sigma_y, (int, float)) or sigma_y < 0:
        raise InputError(f"`sigma_y` must be a number >= 0; got {sigma_y!r}")
    v = math.inf if data_var is None else float(data_var)
    c = 1.0 if A.gram is None else A.gram

    def log_prob(x: Tensor, t: Tensor) -> Tensor:
        a, s = path.coefs(x, t)
        x0 = tweedie(x, call_score(score_fn, x, t), a, s)
        ratio2 = (s / a).reshape(len(x), -1)[:, 0] ** 2
        r2 = ratio2 / (1 + ratio2 / v)
        res = (y.to(x) - A(x0)).reshape(len(x), -1)
        return -res.square().sum(1) / (2 * (sigma_y ** 2 + c * r2))
    return log_prob
