"""The samplers' compiled inner loop: ``sample(name, ..., compile=True)``.

A one-step sampler's update from grid point ``i`` to ``i + 1`` is its own ``run`` on the
two-point grid ``(ts[i], ts[i+1])`` (the same arithmetic: its step reads nothing else of
the grid). That run, with the grid values as tensor inputs, is compiled once per shape
(`solvers.compiled.program.compile_fresh`, ``fullgraph=True``) and called for every step
from a Python loop, which keeps everything that is host work outside the graph: the score
calls are counted there (``nfe``), the user's ``callback`` and the finiteness poll see every
grid point as in the eager loop, and the noise is drawn there, one draw per step from the
run's own noise sampler (the generator, ``'indexed'`` or ``'brownian'``) for the move
``ts[i] -> ts[i+1]``, in the eager loop's order, so a compiled run follows the same random
path (``em`` asks for ``t -> t - dt``, equal to ``ts[i+1]`` up to rounding; and the eager
``em`` without a callback steps in `solvers.solve_sde` with its own increments, while the
compiled one draws per step as ``em`` does with a callback).

The first step runs eagerly: it counts the step's score calls and checks that it draws at
most one normal, for the move ``ts[0] -> ts[1]`` (otherwise the sampler is refused).
``dpmpp_2m`` is multistep (step i uses the previous denoiser): its update is compiled from
the same formula as `dpm_solver.dpmpp_2m`, carrying ``(D_{i-1}, h_{i-1})``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch

from solvers.compiled import CompileOptions
from solvers.compiled.options import as_compile_options
from solvers.compiled.program import cached_program, compile_fresh

from ..errors import InputError
from .base import Model, Sampler
from .grid import Grid
from .noise import NoiseSampler

Tensor = torch.Tensor

__all__ = ["COMPILED_SAMPLERS", "compiled_run"]

#: samplers with a compiled inner loop (one-step ones by their two-point runs)
COMPILED_SAMPLERS = ("ddim", "em", "dpmpp_2s", "dpmpp_2m")
_MULTISTEP = ("dpmpp_2m",)


class _Inner:
    """The hook a compiled step's run sees: keeps the state, remembers the x0 estimate."""

    passive = False  # em steps in Python (run_predictor), not through solvers.solve_sde
    denoised: Optional[Tensor] = None

    def __call__(self, i: int, t: Tensor, x: Tensor, denoised: Optional[Tensor] = None
                 ) -> Tensor:
        self.denoised = denoised
        return x


class _Given:
    """The noise a compiled step's run sees: the normal drawn outside for this step."""

    def __init__(self, z: Optional[Tensor]) -> None:
        self.z = z

    def __call__(self, x: Tensor, t: Any = None, s: Any = None) -> Tensor:
        return self.z


class _Recorder:
    """The eager first step's noise: the run's sampler, recording each draw's times."""

    def __init__(self, noise: NoiseSampler) -> None:
        self.noise, self.calls = noise, []

    def __call__(self, x: Tensor, t: Any = None, s: Any = None) -> Tensor:
        self.calls.append((t, s))
        return self.noise(x, t, s)


def _sub(grid: Grid, i: int) -> Grid:
    return Grid(*(v[i:i + 2] for v in grid))


def _uncounted(model: Model) -> Model:
    """The model the graphs call: same score, counted in a tensor (the loop counts)."""
    inner = Model(model.sde, model.score_fn, model.x0_limit)
    inner.nfe = torch.zeros((), dtype=torch.long)
    return inner


def _one_step(spec: Sampler, model: Model, options: Dict[str, Any]) -> Callable:
    def step(x: Tensor, ts: Tensor, a: Tensor, s: Tensor, lam: Tensor,
             z: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        hook = _Inner()
        x = spec.run(model, x, Grid(ts, a, s, lam), hook, _Given(z), **options)
        return x, hook.denoised
    return step


def _dpmpp_2m_step(model: Model) -> Callable:
    def step(x: Tensor, ts: Tensor, a: Tensor, s: Tensor, lam: Tensor, d_prev: Tensor,
             h_prev: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        d = model.denoised(x, ts[0], a[0], s[0])
        h = lam[1] / 2 - lam[0] / 2
        d_hat = d + (d - d_prev) * (h / (2 * h_prev))
        return (s[1] / s[0]) * x - a[1] * torch.expm1(-h) * d_hat, d, h
    return step


def compiled_run(name: str, spec: Sampler, compile: Any) -> Callable[..., Tensor]:
    """A ``run(model, x, grid, callback, noise, **options)`` for sampler ``name`` whose
    steps after the first are compiled; refuses samplers without a compiled loop."""
    opts = as_compile_options(compile)
    if name not in COMPILED_SAMPLERS:
        raise InputError(f"`compile=True` has a compiled inner loop for the samplers "
                         f"{COMPILED_SAMPLERS}; got {name!r} (compile the score network "
                         f"itself instead: score_fn = torch.compile(net))")
    if opts.cuda_graphs:
        raise InputError("`compile` with cuda_graphs=True applies to solvers' fixed-grid "
                         "ODE solves, not to the samplers' loops")

    def run(model: Model, x: Tensor, grid: Grid, callback: Any, noise: NoiseSampler,
            **options: Any) -> Tensor:
        return _loop(name, spec, model, x, grid, callback, noise, options, opts)
    return run


def _loop(name: str, spec: Sampler, model: Model, x: Tensor, grid: Grid, callback: Any,
          noise: NoiseSampler, options: Dict[str, Any], opts: CompileOptions) -> Tensor:
    ts = grid.ts
    n0 = model.nfe
    probe, rec = _Inner(), _Recorder(noise)
    x = spec.run(model, x, _sub(grid, 0), probe, rec, **options)
    per_step, draws = model.nfe - n0, rec.calls
    if len(draws) > 1 or (draws and not torch.allclose(
            torch.stack([torch.as_tensor(v, dtype=ts.dtype) for v in draws[0]]), ts[:2])):
        raise InputError(f"`compile=True`: sampler {name!r} with options {options} draws "
                         f"{len(draws)} normals per step, not one for the step's move; run "
                         "it eagerly")
    x = callback(1, ts[1], x, probe.denoised)
    key = (name, model.sde, model.score_fn, _limit_key(model), tuple(sorted(options.items())),
           x.dtype, x.device, opts)
    multistep = name in _MULTISTEP
    step = cached_program(key, lambda: compile_fresh(
        (_dpmpp_2m_step if multistep else lambda m: _one_step(spec, m, options))(
            _uncounted(model)), opts))
    d, h = probe.denoised, grid.log_snr[1] / 2 - grid.log_snr[0] / 2
    for i in range(1, len(ts) - 1):
        g = _sub(grid, i)
        if multistep:
            x, d, h = step(x, *g, d, h)
        else:
            x, d = step(x, *g, noise(x, ts[i], ts[i + 1]) if draws else None)
        model.nfe += per_step
        x = callback(i + 1, ts[i + 1], x, d)
    return x


def _limit_key(model: Model) -> Any:
    """The denoiser limit as a key: its closure's values (a new lambda every run)."""
    lim = model.x0_limit
    if lim is None:
        return None
    cells = tuple(c.cell_contents for c in (lim.__closure__ or ()))
    return (lim.__code__, cells)
