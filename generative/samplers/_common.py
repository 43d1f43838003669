"""Shared pieces of the samplers: argument checks, the initial state, the time grid, the per-step
projection hook and the final Tweedie denoising step. Every sampler returns ``(samples, nfe)``
where ``nfe`` counts calls of ``score_fn`` on the batch (an int, or a ``(B,)`` tensor for
per-sample ODE solves).

Projection hook: every step-based sampler takes ``project(x, t) -> x`` (default ``None``) and
applies it, through `apply_project`, to the initial state at ``T`` and to the state after each
step at the step's end time (a 0-dim tensor). Inpainting by replacement uses it to put the
known pixels on the forward kernel (`dynamics.inpaint_project`)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import torch

from dynamics import CosineVPSDE, LinearSDE, VPSDE, call_score
from dynamics.base import expand_coef
from solvers.errors import InvalidInputError, describe

Tensor = torch.Tensor

__all__ = ["check_sde", "check_steps", "initial_state", "time_grid", "tweedie_denoise",
           "check_discretization", "Project", "check_project", "apply_project"]

#: ``project(x, t) -> x``, applied after every sampler step (t a 0-dim tensor)
Project = Callable[[Tensor, Tensor], Tensor]


def check_sde(sde, score_fn) -> None:
    if not isinstance(sde, LinearSDE):
        raise InvalidInputError(f"`sde` must be a dynamics SDE (LinearSDE); got {describe(sde)}")
    if not callable(score_fn):
        raise InvalidInputError(f"`score_fn` must be a callable score_fn(x, t); "
                                f"got {describe(score_fn)}")


def check_project(project: Optional[Project]) -> None:
    if project is not None and not callable(project):
        raise InvalidInputError(f"`project` must be None or a callable project(x, t) -> x; "
                                f"got {describe(project)}")


def apply_project(project: Optional[Project], x: Tensor, t: Tensor) -> Tensor:
    """``project(x, t)`` when a projection is given (its output must keep x's shape), else x."""
    if project is None:
        return x
    out = project(x, t)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        raise InvalidInputError(f"`project(x, t)` must return a tensor of x's shape "
                                f"{tuple(x.shape)}; got {describe(out)}")
    return out


def check_steps(name: str, n, minimum: int = 1) -> int:
    """``n`` as an int >= minimum, or a clear error naming the argument."""
    if isinstance(n, bool) or not isinstance(n, (int, float)) or int(n) != n or n < minimum:
        raise InvalidInputError(f"`{name}` must be an integer >= {minimum}; got {n!r}")
    return int(n)


def initial_state(sde: LinearSDE, shape: Optional[Sequence[int]], x_init: Optional[Tensor],
                  generator: Optional[torch.Generator], dtype: Optional[torch.dtype],
                  device) -> Tensor:
    """``x_init`` if given (a tensor ``(B, *event)``), else prior samples of ``shape``."""
    if x_init is not None:
        if not isinstance(x_init, Tensor) or not x_init.is_floating_point() or x_init.dim() < 2:
            raise InvalidInputError(f"`x_init` must be a floating-point tensor (B, *event); "
                                    f"got {describe(x_init)}")
        return x_init
    if shape is None:
        raise InvalidInputError("give `shape` = (B, *event) or an initial state `x_init`")
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`shape` must be a sequence of ints (B, *event); "
                                f"got {shape!r}") from None
    if len(shape) < 2 or min(shape) < 1:
        raise InvalidInputError(f"`shape` must be (B, *event) with positive sizes; got {shape}")
    if generator is not None and device is None:
        device = generator.device
    return sde.prior_sample(shape, generator=generator, dtype=dtype, device=device)


def time_grid(sde: LinearSDE, n_steps: int, x: Tensor, eps: Optional[float] = None) -> Tensor:
    """``n_steps + 1`` equally spaced times from ``sde.T`` down to ``eps`` (default ``sde.eps``)."""
    end = sde.eps if eps is None else float(eps)
    if not (0.0 <= end < sde.T):
        raise InvalidInputError(f"`eps` must satisfy 0 <= eps < T = {sde.T:g}; got {eps!r}")
    return torch.linspace(sde.T, end, n_steps + 1, dtype=x.dtype, device=x.device)


def tweedie_denoise(sde: LinearSDE, score_fn, x: Tensor, t) -> Tensor:
    """Final denoising step (no noise): Tweedie's posterior mean ``E[x0 | x_t = x]``
    ``= (x + sigma(t)^2 score(x, t)) / alpha(t)``; for VE (alpha = 1) ``x + sigma^2 score``."""
    tt = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    a = expand_coef(sde.alpha(tt), x)
    s = expand_coef(sde.sigma(tt), x)
    return (x + s ** 2 * call_score(score_fn, x, tt)) / a


def noise(x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


Nfe = Union[int, Tensor]
Result = Tuple[Tensor, Nfe]


def check_discretization(sde: LinearSDE, x: Tensor, ts: Tensor) -> None:
    """Raise a clear error when the grid is too coarse for ``sde.discretize`` (one host sync):
    DDPM's step needs ``beta_n = beta(t) dt < 1`` (else sqrt(1 - beta_n) is NaN)."""
    dt = ts[0] - ts[1]
    f_n, g_n = sde.discretize(x[:1], ts[0], dt)
    beta = float(g_n.flatten()[0]) ** 2
    vp = isinstance(sde, (VPSDE, CosineVPSDE))
    if not bool(torch.isfinite(f_n).all()) or not torch.isfinite(g_n).all() or \
            (vp and beta >= 1.0):
        n = len(ts) - 1
        raise InvalidInputError(
            f"`n_steps` = {n} is too coarse for {type(sde).__name__}.discretize: the first step "
            f"(t = {float(ts[0]):g}, dt = {float(dt):g}) has beta_n = g_n^2 = {beta:.3g}, but "
            f"the discrete step needs beta_n < 1; use more steps")


def run_predictor(step, sde: LinearSDE, score_fn, shape: Optional[Sequence[int]], *,
                  n_steps: int, eps: Optional[float], denoise: bool, x_init: Optional[Tensor],
                  generator: Optional[torch.Generator], dtype, device,
                  project: Optional[Project] = None, discrete: bool = True) -> "Result":
    """Shared loop of the one-evaluation-per-step predictors: ``step(sde, score_fn, x, t, dt,
    generator) -> (x, x_mean)`` applied on the grid from T to eps (each step followed by
    ``project``), then optional Tweedie denoising. ``discrete``: the step uses
    ``sde.discretize`` (check the grid, `check_discretization`). Returns ``(x, nfe)`` with
    ``nfe = n_steps (+1 if denoise)``."""
    n_steps = check_steps("n_steps", n_steps)
    check_project(project)
    x = initial_state(sde, shape, x_init, generator, dtype, device)
    ts = time_grid(sde, n_steps, x, eps)
    if discrete:
        check_discretization(sde, x, ts)
    x = apply_project(project, x, ts[0])
    for i in range(n_steps):
        x, _ = step(sde, score_fn, x, ts[i], ts[i] - ts[i + 1], generator)
        x = apply_project(project, x, ts[i + 1])
    if denoise:
        return tweedie_denoise(sde, score_fn, x, ts[-1]), n_steps + 1
    return x, n_steps
