"""Shared pieces of the samplers: argument checks, the initial state, the time grid, the per-step
projection hook and the final Tweedie denoising step. Every sampler returns ``(samples, nfe)``
where ``nfe`` counts calls of ``score_fn`` on the batch (an int, or a ``(B,)`` tensor for
per-sample ODE solves).

Projection hook: every step-based sampler takes ``project(x, t) -> x`` (default ``None``) and
applies it, through `apply_project`, to the initial state at ``T`` and to the state after each
step at the step's end time (a 0-dim tensor). Inpainting by replacement uses it to put the
known pixels on the forward kernel (`dynamics.inpaint_project`).

Faults: the sampling arguments (``shape``, ``x_init``, ``dtype``, ``device``, ``generator``) are
checked in one place, `initial_state` (through `dynamics.checks.check_draw`); a non-finite state
raises `solvers.errors.NonFiniteError` with the time reached, found by `FinitePoll`: one host
sync every ``poll_every`` steps (default 1 on CPU, 16 on accelerators) and one at the end, as
the solvers poll (../shared/DESIGN.md)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import torch

from dynamics import CosineVPSDE, LinearSDE, VPSDE, call_score
from dynamics.broadcast import expand_coef
from dynamics.checks import check_device, check_draw, check_dtype, check_generator
from solvers.errors import InvalidInputError, NonFiniteError, describe

Tensor = torch.Tensor

__all__ = ["check_sde", "check_steps", "initial_state", "time_grid", "tweedie_denoise",
           "check_discretization", "Project", "check_project", "apply_project", "FinitePoll"]

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
    """``x_init`` if given (a finite floating-point tensor ``(B, *event)`` with values), else
    prior samples of ``shape``. Every sampler's arguments are checked here: ``dtype`` (None or
    floating point), ``device`` (None or available here, not 'meta'), ``generator`` (None or a
    ``torch.Generator`` on the samples' device type). A non-finite ``x_init`` raises
    `NonFiniteError` at ``t = T`` (one host sync, before the loop)."""
    check_dtype(dtype)
    dev = check_device(device)
    if dev is not None and dev.type == "meta":
        raise InvalidInputError("`device` must hold values to sample on ('cpu', 'cuda', ...); "
                                "got 'meta' (shape-only tensors)")
    if x_init is not None:
        if not isinstance(x_init, Tensor) or not x_init.is_floating_point() or x_init.dim() < 2:
            raise InvalidInputError(f"`x_init` must be a floating-point tensor (B, *event); "
                                    f"got {describe(x_init)}")
        if x_init.device.type == "meta":
            raise InvalidInputError(f"`x_init` must be a tensor with values (B, *event) on "
                                    f"'cpu' or an accelerator; got a 'meta' tensor of shape "
                                    f"{tuple(x_init.shape)}")
        if x_init.numel() == 0:
            raise InvalidInputError(f"`x_init` must have positive sizes (B, *event); got shape "
                                    f"{tuple(x_init.shape)}")
        check_generator(generator, x_init.device)
        if not bool(torch.isfinite(x_init).all()):
            bad = int((~torch.isfinite(x_init)).sum())
            raise NonFiniteError(f"`x_init` is non-finite ({bad} NaN/inf of {x_init.numel()} "
                                 f"entries): the sampler would start at t = T = {sde.T:g} from "
                                 f"a non-finite state",
                                 t=torch.tensor(sde.T), ys=x_init, stats={"nfe": 0, "n_steps": 0})
        return x_init
    if shape is None:
        raise InvalidInputError("give `shape` = (B, *event) or an initial state `x_init`")
    shape, dev = check_draw(shape, generator, dtype, dev)
    if len(shape) < 2:
        raise InvalidInputError(f"`shape` must be (B, *event) with at least one event "
                                f"dimension; got {shape}")
    return sde.prior_sample(shape, generator=generator, dtype=dtype, device=dev)


class FinitePoll:
    """The samplers' finiteness check: after step ``i`` (state at ``ts[i + 1]``) one host sync
    every ``poll_every`` steps and after the last step, and `final` after the last operation
    (e.g. denoising). On a non-finite state it raises `NonFiniteError` whose ``t`` is the time
    of the poll that found it (the state was finite at the previous poll, ``stats['t_finite']``),
    ``ys`` the last state seen finite and ``stats`` ``{'nfe', 'n_steps', 't_finite'}``."""

    def __init__(self, sampler: str, ts: Tensor, x: Tensor,
                 poll_every: Optional[int] = None) -> None:
        if poll_every is None:
            poll_every = 1 if x.device.type == "cpu" else 16
        self.every = check_steps("poll_every", poll_every)
        self.sampler, self.ts, self.n = sampler, ts, len(ts) - 1
        self.last, self.last_i = x, -1

    def __call__(self, i: int, x: Tensor, nfe: int) -> None:
        """Poll after step ``i`` (0-based) when it is due; ``nfe`` score calls so far."""
        if (i + 1) % self.every == 0 or i == self.n - 1:
            self._check(x, i, self.ts[i + 1], nfe)

    def final(self, x: Tensor, t: Tensor, nfe: int) -> Tensor:
        """Check the returned state (one host sync); returns it."""
        self._check(x, self.n, t, nfe, final=True)
        return x

    def wrap(self, err: NonFiniteError) -> NonFiniteError:
        """The solver's `NonFiniteError` (em and ode poll inside `solvers`) restated for this
        sampler; ``t``, ``ys`` and ``stats`` are the solver's."""
        t = torch.as_tensor(err.t).detach().double()
        when = (f"{float(t):.6g}" if t.numel() == 1 else
                f"{float(t.min()):.6g} ... {float(t.max()):.6g} (per row)")
        return NonFiniteError(
            f"the `{self.sampler}` sampler's state became non-finite by t = {when} (polled "
            f"every {self.every} step(s) by solvers: {err}). Check score_fn for NaN/inf outputs "
            f"(or use more steps)", t=err.t, ys=err.ys, stats=err.stats)

    def _check(self, x: Tensor, i: int, t: Tensor, nfe: int, final: bool = False) -> None:
        if bool(torch.isfinite(x).all()):
            self.last, self.last_i = x, i
            return
        t_ok = float(self.ts[self.last_i + 1]) if self.last_i < self.n else float(self.ts[-1])
        where = ("in the final denoising step" if final else
                 f"by t = {float(t):.6g} (step {i + 1} of {self.n}, polled every {self.every} "
                 f"step(s))")
        raise NonFiniteError(
            f"the `{self.sampler}` sampler's state became non-finite {where}; it was finite at "
            f"t = {t_ok:.6g}. Check score_fn for NaN/inf outputs (or use more steps)",
            t=t.detach(), ys=self.last,
            stats={"nfe": nfe, "n_steps": min(i + 1, self.n), "t_finite": t_ok})


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
                  project: Optional[Project] = None, discrete: bool = True,
                  name: str = "sampler", poll_every: Optional[int] = None) -> "Result":
    """Shared loop of the one-evaluation-per-step predictors: ``step(sde, score_fn, x, t, dt,
    generator) -> (x, x_mean)`` applied on the grid from T to eps (each step followed by
    ``project``), then optional Tweedie denoising. ``discrete``: the step uses
    ``sde.discretize`` (check the grid, `check_discretization`). A non-finite state raises
    `NonFiniteError` (`FinitePoll`, every ``poll_every`` steps). Returns ``(x, nfe)`` with
    ``nfe = n_steps (+1 if denoise)``."""
    n_steps = check_steps("n_steps", n_steps)
    check_project(project)
    x = initial_state(sde, shape, x_init, generator, dtype, device)
    ts = time_grid(sde, n_steps, x, eps)
    poll = FinitePoll(name, ts, x, poll_every)
    if discrete:
        check_discretization(sde, x, ts)
    x = apply_project(project, x, ts[0])
    for i in range(n_steps):
        x, _ = step(sde, score_fn, x, ts[i], ts[i] - ts[i + 1], generator)
        x = apply_project(project, x, ts[i + 1])
        poll(i, x, i + 1)
    if denoise:
        return poll.final(tweedie_denoise(sde, score_fn, x, ts[-1]), ts[-1], n_steps + 1), \
            n_steps + 1
    return x, n_steps
