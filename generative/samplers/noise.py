"""Noise samplers: where a stochastic sampler's standard normal draws come from.

A sampler asks ``noise(x, t, s)`` for a standard normal tensor of x's shape for its move from
time ``t`` to time ``s`` (``t == s`` for a draw at one time, e.g. Langevin or churn). Three
sources, picked by `sample`'s ``noise=`` argument:

- `GeneratorNoise` (``noise=None``, the default): ``torch.randn`` from the ``generator``, in
  call order. A row's draws depend on the batch it is in.
- `IndexedNoise` (``'indexed'``): row ``b``'s k-th draw of the run comes from a generator
  seeded by ``(seed, start + b, k)`` only, so a sample is the same whatever the batch size,
  its position in the batch or the rank that draws it (``start``: the global index of row 0).
  (``pc``'s corrector step size averages over the batch, as the reference code: its samples
  still depend on the batch.)
- `BrownianNoise` (``'brownian'``): one Brownian motion per sample index on the grid's time
  span (`solvers.BrownianInterval`, entropy from ``(seed, start + b)``), and the draw for
  ``t -> s`` is ``(W(s) - W(t)) / sqrt|s - t|``: a run with more steps follows the same path,
  so refining the grid converges to the same SDE solution (k-diffusion's Brownian-tree noise
  sampler). A draw at one time (``t == s``) has no increment and is refused.
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Protocol, Union

import torch

from solvers import BrownianInterval
from solvers.brownian.seeds import seed_for
from solvers.errors import describe

from ..errors import InputError

Tensor = torch.Tensor

__all__ = ["NoiseSampler", "GeneratorNoise", "IndexedNoise", "BrownianNoise", "NOISES",
           "make_noise"]

NOISES = ("indexed", "brownian")


class NoiseSampler(Protocol):
    """``noise(x, t, s)``: standard normal noise of x's shape, dtype and device for the move
    from time ``t`` to ``s``."""

    def __call__(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor: ...


class GeneratorNoise:
    """Draws from ``generator`` (None: torch's global generator) in call order."""

    def __init__(self, generator: Optional[torch.Generator] = None) -> None:
        self.generator = generator

    def __call__(self, x: Tensor, t: Any = None, s: Any = None) -> Tensor:
        return torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)


def _rows(x: Tensor) -> int:
    if x.dim() < 1 or x.shape[0] < 1:
        raise InputError(f"noise draws are per sample: x must be (B, *event); got "
                         f"{describe(x)}")
    return x.shape[0]


class IndexedNoise:
    """Row ``b``'s k-th draw of the run from a generator seeded by ``(seed, start + b, k)``:
    independent of the batch size, position and rank."""

    def __init__(self, seed: int, start: int = 0) -> None:
        self.seed, self.start, self.draws = _int("seed", seed), _int("start", start), 0

    def __call__(self, x: Tensor, t: Any = None, s: Any = None) -> Tensor:
        k, self.draws = self.draws, self.draws + 1
        gen = torch.Generator(device=x.device)
        rows = []
        for b in range(_rows(x)):
            gen.manual_seed(seed_for(self.seed, self.start + b, k))
            rows.append(torch.randn(x.shape[1:], generator=gen, dtype=x.dtype, device=x.device))
        return torch.stack(rows)


class BrownianNoise:
    """Normalised increments of one Brownian motion per sample index on ``[t_min, t_max]``
    (built on the first draw from x's event shape, dtype and device)."""

    def __init__(self, seed: int, t_min: float, t_max: float, start: int = 0) -> None:
        self.seed, self.start = _int("seed", seed), _int("start", start)
        if not (math.isfinite(t_min) and math.isfinite(t_max) and t_min < t_max):
            raise InputError(f"BrownianNoise needs finite t_min < t_max; got {t_min!r}, "
                             f"{t_max!r}")
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.paths: List[BrownianInterval] = []

    def _paths(self, x: Tensor) -> List[BrownianInterval]:
        n = _rows(x)
        while len(self.paths) < n:
            self.paths.append(BrownianInterval(
                self.t_min, self.t_max, tuple(x.shape[1:]), dtype=x.dtype, device=x.device,
                entropy=seed_for(self.seed, self.start + len(self.paths))))
        return self.paths[:n]

    def __call__(self, x: Tensor, t: Union[Tensor, float], s: Union[Tensor, float]) -> Tensor:
        t, s = float(t), float(s)
        if t == s:
            raise InputError("Brownian noise draws increments W(s) - W(t) over a move t -> s; "
                             f"this sampler asked for a draw at one time t = {t:g} "
                             "(Langevin or churn noise): use noise=None or 'indexed'")
        lo, hi = min(t, s), max(t, s)
        dw = torch.stack([w(max(lo, self.t_min), min(hi, self.t_max)) for w in self._paths(x)])
        return dw * ((1.0 if s > t else -1.0) / math.sqrt(hi - lo))


def _int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InputError(f"`{name}` must be an integer >= 0; got {v!r}")
    return v


def make_noise(noise: Any, generator: Optional[torch.Generator], seed: Optional[int],
               start: int, t_min: float, t_max: float) -> NoiseSampler:
    """`sample`'s ``noise`` argument as a `NoiseSampler`: None (the generator), ``'indexed'``,
    ``'brownian'`` (``seed`` default: one draw from ``generator``) or a callable
    ``noise(x, t, s)``."""
    if noise is None:
        if seed is not None or start:
            raise InputError("`seed` and `start` apply to noise='indexed' or 'brownian'")
        return GeneratorNoise(generator)
    if callable(noise) and not isinstance(noise, str):
        return noise
    if noise not in NOISES:
        raise InputError(f"`noise` must be None, one of {', '.join(map(repr, NOISES))} or a "
                         f"callable noise(x, t, s); got {describe(noise)}")
    if seed is None:
        seed = int(torch.randint(0, 2 ** 62, (), generator=generator, device=(
            generator.device if generator is not None else "cpu")))
    if noise == "indexed":
        return IndexedNoise(seed, start)
    return BrownianNoise(seed, t_min, t_max, start)
