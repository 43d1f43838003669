"""The sampling front end: `sample` owns everything around a sampler's numerical update.

It checks the arguments, draws the prior (or takes ``x_init``), builds the time grid, turns an
NFE budget into steps with the sampler's own `StepCost`, runs the sampler, applies the final
Tweedie denoising step and polls for non-finite states. A sampler (one module each) is a
function ``run(model, x, grid, callback, generator, **options) -> x``: the update only, as
k-diffusion's ``sample_dpmpp_2m(model, x, sigmas, extra_args, callback)``.

``callback(i, t, x, denoised)`` is called on the state at every grid point ``i`` (``i = 0``
the initial state at T, ``i = n_steps`` the last) with the sampler's x0 estimate there
(``None`` where it has none); a tensor it returns replaces the state (inpainting by
replacement uses this), ``None`` keeps it.

NFE counts the calls of ``score_fn`` on the batch (an int, or a ``(B,)`` tensor for
per-sample ODE solves). Faults: the sampling arguments are checked in `initial_state`; a
non-finite state raises `solvers.errors.NonFiniteError` (`FinitePoll`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch

from dynamics import LinearSDE, call_score, tweedie
from dynamics.checks import (check_batch, check_choice, check_device, check_draw, check_dtype,
                             check_generator)
from dynamics.deprecation import UNSET, renamed_argument
from solvers.errors import NonFiniteError, describe

from ..errors import InputError
from ..results import SampleResult
from .base import Callback, Hook, Model, Sampler, check_steps
from .compiled import compiled_run
from .grid import SPACINGS, Grid, given_grid, schedule_grid, spacing_grid, uniform_grid
from .noise import make_noise
from .poll import FinitePoll
from .registry import SAMPLERS
from .x0_limits import x0_limit

Tensor = torch.Tensor
Nfe = Union[int, Tensor]

__all__ = ["sample", "initial_state", "tweedie_denoise", "SamplerResult"]


class SamplerResult(SampleResult):
    """`sample`'s `SampleResult`: ``x`` and ``nfe``, the score calls on the batch as counted
    (an int, or a ``(B,)`` tensor for per-sample ODE solves); unpacks as ``x, nfe`` and, as
    the tuple it replaces, indexes (``result[0]`` is ``x``)."""

    def __getitem__(self, i: Any) -> Any:
        return (self.x, self.nfe)[i]

    def __len__(self) -> int:
        return 2


def initial_state(sde: LinearSDE, shape: Optional[Sequence[int]], x_init: Optional[Tensor],
                  generator: Optional[torch.Generator], dtype: Optional[torch.dtype],
                  device: Any) -> Tensor:
    """``x_init`` if given (a finite floating-point tensor ``(B, *event)`` with values), else
    prior samples of ``shape``. Checks ``dtype`` (None or floating point), ``device`` (None or
    available here, not 'meta'), ``generator`` (None or a ``torch.Generator`` on the samples'
    device type). A non-finite ``x_init`` raises `NonFiniteError` at ``t = T`` (one host
    sync, before the loop)."""
    check_dtype(dtype)
    dev = check_device(device)
    if dev is not None and dev.type == "meta":
        raise InputError("`device` must hold values to sample on ('cpu', 'cuda', ...); "
                         "got 'meta' (shape-only tensors)")
    if x_init is not None:
        check_batch("x_init", x_init)
        check_generator(generator, x_init.device)
        if not bool(torch.isfinite(x_init).all()):
            bad = int((~torch.isfinite(x_init)).sum())
            raise NonFiniteError(f"`x_init` is non-finite ({bad} NaN/inf of {x_init.numel()} "
                                 f"entries): the sampler would start at t = T = {sde.T:g} from "
                                 f"a non-finite state",
                                 t=torch.tensor(sde.T), ys=x_init, stats={"nfe": 0, "n_steps": 0})
        return x_init
    if shape is None:
        raise InputError("give `shape` = (B, *event) or an initial state `x_init`")
    shape, dev = check_draw(shape, generator, dtype, dev)
    if len(shape) < 2:
        raise InputError(f"`shape` must be (B, *event) with at least one event "
                         f"dimension; got {shape}")
    return sde.prior_sample(shape, generator=generator, dtype=dtype, device=dev)


def tweedie_denoise(sde: LinearSDE, score_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                    t: Any) -> Tensor:
    """The final denoising step (no noise): Tweedie's ``E[x0 | x_t = x]`` at time ``t``."""
    tt = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    a, s = sde.coefs(x, tt)
    return tweedie(x, call_score(score_fn, x, tt), a, s)


def _check_model(sde: Any, score_fn: Any) -> None:
    if not isinstance(sde, LinearSDE):
        raise InputError(f"`sde` must be a dynamics SDE (LinearSDE); got {describe(sde)}")
    if not callable(score_fn):
        raise InputError(f"`score_fn` must be a callable score_fn(x, t); "
                         f"got {describe(score_fn)}")


def _grid(spec: Sampler, sde: LinearSDE, n_steps: int, x: Tensor, t_min: Optional[float],
          schedule: Optional[str], rho: float) -> Grid:
    if schedule in SPACINGS:
        if t_min is not None:
            raise InputError(f"`t_min` does not apply to the {schedule!r} spacing: its "
                             f"timesteps fix the end time")
        return spacing_grid(sde, n_steps, x, schedule)
    if spec.grid == "schedule":
        return schedule_grid(sde, n_steps, x, t_min, spec.schedule if schedule is None
                             else schedule, rho)
    if schedule is not None:
        raise InputError("`schedule` applies to the samplers on a log-SNR grid (ddim, dpmpp_*, "
                         "edm_heun, ...) and to diffusers' spacings "
                         f"{', '.join(map(repr, SPACINGS))}; this sampler steps uniformly in t")
    return uniform_grid(sde, n_steps, x, t_min)


def _n_steps(spec: Sampler, name: str, nfe: Any, n_steps: Any, denoise: bool,
             options: Dict[str, Any]) -> Optional[int]:
    """The number of steps from an ``nfe`` budget or ``n_steps`` (None: adaptive)."""
    if nfe is not None:
        if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
            raise InputError(f"`nfe` must be an integer >= 1 (score evaluations); "
                             f"got {nfe!r}")
        if n_steps is not None:
            raise InputError("give either `nfe` or `n_steps`, not both")
        n_steps = spec.cost(options).steps(nfe, denoise, name)
    if n_steps is None:
        n_steps = spec.n_steps
    return None if n_steps is None else check_steps("n_steps", n_steps)


def _given(spec: Sampler, sde: LinearSDE, x: Tensor, times: Any, sigmas: Any,
           clash: Dict[str, Any]) -> Tuple[Grid, bool]:
    given = [k for k, v in clash.items() if v is not None]
    if given:
        raise InputError(f"a given grid (`times` / `sigmas`) fixes the steps; do not also give "
                         f"{', '.join(f'`{k}`' for k in given)}")
    return given_grid(sde, x, times, sigmas, need_log_snr=spec.grid == "schedule")


def sample(name: str, sde: LinearSDE, score_fn: Callable[[Tensor, Tensor], Tensor],
           shape: Optional[Sequence[int]] = None, *, nfe: Optional[int] = None,
           n_steps: Optional[int] = None, schedule: Optional[str] = None, rho: float = 7.0,
           t_min: Optional[float] = None, times: Any = None, sigmas: Any = None,
           denoise: bool = False, x_init: Optional[Tensor] = None,
           generator: Optional[torch.Generator] = None, noise: Any = None,
           seed: Optional[int] = None, start: int = 0, dtype: Optional[torch.dtype] = None,
           device: Any = None, callback: Optional[Callback] = None,
           poll_every: Optional[int] = None, clip_x0: Optional[float] = None,
           threshold: Optional[float] = None, threshold_max: float = math.inf,
           eps: Any = UNSET, compile: Any = False, **options: Any) -> SamplerResult:
    """Run sampler ``name`` (one of `SAMPLERS`) from ``T`` down to ``t_min`` (default
    ``sde.t_min``; ``eps`` is its deprecated name); returns a `SamplerResult` (unpacks as
    ``x, nfe``).

    ``nfe`` is a budget of score evaluations turned into ``n_steps`` with the sampler's cost
    (for ``ode`` it makes the solve fixed-step); else ``n_steps`` (default: the sampler's).
    ``schedule`` and ``rho`` pick the grid (`grid.schedule_grid`; diffusers' spacings
    `grid.SPACINGS`); ``times`` or ``sigmas`` give it (`grid.given_grid`; a final 0 in
    ``sigmas`` is ``denoise=True``). ``denoise`` ends with one Tweedie step at the last grid
    time (one more NFE). ``noise``: where stochastic samplers draw (`noise.make_noise`: None,
    the ``generator``, or the sampler's default; ``'indexed'`` or ``'brownian'`` from ``seed``,
    row 0 being sample ``start``; or a callable ``noise(x, t, s)``). ``callback(i, t, x,
    denoised)`` see the module docstring; ``poll_every`` the finiteness poll's interval
    (default 1 on CPU, 16 on accelerators). ``clip_x0`` (static clipping) or ``threshold``
    (dynamic thresholding, cap ``threshold_max``) limit the denoiser (`x0_limits`), also in
    the final denoising step. ``compile`` (True or a `solvers.CompileOptions`): the steps
    of ``ddim``, ``em``, ``dpmpp_2s``, ``dpmpp_2m`` compiled (`compiled`). ``options`` go to
    the sampler.
    """
    spec = SAMPLERS[check_choice("name", name, sorted(SAMPLERS))]
    t_min = renamed_argument("eps", eps, "t_min", t_min, "sample")
    _check_model(sde, score_fn)
    if callback is not None and not callable(callback):
        raise InputError(f"`callback` must be None or a callable callback(i, t, x, "
                         f"denoised); got {describe(callback)}")
    given = times is not None or sigmas is not None
    if not given:
        n_steps = _n_steps(spec, name, nfe, n_steps, denoise, options)
    x = initial_state(sde, shape, x_init, generator, dtype, device)
    if given:
        clash = dict(nfe=nfe, n_steps=n_steps, schedule=schedule, t_min=t_min)
        grid, zero = _given(spec, sde, x, times, sigmas, clash)
        denoise, n_steps = denoise or zero, len(grid.ts) - 1
    else:
        grid = _grid(spec, sde, 1 if n_steps is None else n_steps, x, t_min, schedule,
                     rho)
    draw = make_noise(spec.noise if noise is None else noise, generator, seed, start,
                      float(grid.ts[-1]), sde.T)
    model = Model(sde, score_fn, x0_limit(clip_x0, threshold, threshold_max))
    if poll_every is not None:
        poll_every = check_steps("poll_every", poll_every)
    hook = Hook(callback, FinitePoll(name, grid.ts, x, poll_every), model)
    if spec.n_steps is None:                # adaptive by default: tell it whether it is not
        options["fixed_steps"] = n_steps is not None
    run = compiled_run(name, spec, compile) if compile else spec.run
    x = run(model, hook(0, grid.ts[0], x), grid, hook, draw, **options)
    if denoise:
        t = grid.ts[-1]
        x = hook.poll.final(tweedie_denoise(sde, model.score, x, t), t, model.nfe)
    return SamplerResult(x, model.nfe)
