"""Noise samplers: where a stochastic sampler's standard normal draws come from.

A sampler asks ``noise(x, t, s)`` for a standard normal tensor of x's shape for its move from
time ``t`` to time ``s`` (``t == s`` for a draw at one time, e.g. Langevin or churn). Three
sources, picked by `sample`'s ``noise=`` argument:

- `GeneratorNoise` (``noise=None``, the default): ``torch.randn`` from the ``generator``, in
  call order. A row's draws depend on the batch it is in.
- `IndexedNoise` (``'indexed'``): row ``b``'s k-th draw of the run is a function of
  ``(seed, start + b, k)`` only (`counter_rng`), so a sample is the same whatever the batch
  size, its position in the batch or the rank that draws it (``start``: the global index of
  row 0).
  (``pc``'s corrector step size averages over the batch, as the reference code: its samples
  still depend on the batch.)
- `BrownianNoise` (``'brownian'``): one Brownian motion per sample index on the grid's time
  span (a dyadic Brownian bridge with counter-based node normals), and the draw for
  ``t -> s`` is ``(W(s) - W(t)) / sqrt|s - t|``: a run with more steps follows the same path,
  so refining the grid converges to the same SDE solution (k-diffusion's Brownian-tree noise
  sampler). A draw at one time (``t == s``) has no increment and is refused.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Optional, Protocol, Tuple, Union

import torch

from solvers.errors import describe

from ..errors import InputError
from .counter_rng import normals, row_keys

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


class _Rows:
    """The int64 keys of the sample indices ``start, start + 1, ...`` (extended on demand)."""

    def __init__(self, seed: int, start: int) -> None:
        self.seed, self.start = _int("seed", seed), _int("start", start)
        self.keys: Optional[Tensor] = None

    def __call__(self, x: Tensor) -> Tensor:
        n = _rows(x)
        if self.keys is None or len(self.keys) < n or self.keys.device != x.device:
            self.keys = row_keys(self.seed, range(self.start, self.start + n), x.device)
        return self.keys[:n]


class IndexedNoise:
    """Row ``b``'s k-th draw of the run from counter-based normals keyed by ``(seed, start +
    b, k)`` (`counter_rng`): independent of the batch size, position and rank."""

    def __init__(self, seed: int, start: int = 0) -> None:
        self.rows, self.draws = _Rows(seed, start), 0

    def __call__(self, x: Tensor, t: Any = None, s: Any = None) -> Tensor:
        k, self.draws = self.draws, self.draws + 1
        z = normals(self.rows(x), k, x[0].numel(), x.dtype)
        return z.reshape(x.shape)


class BrownianNoise:
    """Normalised increments of one Brownian motion per sample index on ``[t_min, t_max]``: a
    dyadic Brownian bridge of ``depth`` levels whose node normals are counter-based
    (`counter_rng`, keyed by the sample index and the node), evaluated for all rows at once;
    linear within the leaves (width ``(t_max - t_min) 2^-depth``), exact in law for
    increments over longer intervals, additive and independent of the query order."""

    def __init__(self, seed: int, t_min: float, t_max: float, start: int = 0,
                 depth: int = 24) -> None:
        self.rows = _Rows(seed, start)
        if not (math.isfinite(t_min) and math.isfinite(t_max) and t_min < t_max):
            raise InputError(f"BrownianNoise needs finite t_min < t_max; got {t_min!r}, "
                             f"{t_max!r}")
        self.t_min, self.t_max, self.depth = float(t_min), float(t_max), int(depth)
        self._cache: "OrderedDict[Tuple[float, int, int], Tensor]" = OrderedDict()

    def _w(self, keys: Tensor, tau: float, n: int) -> Tensor:
        """``W(tau) - W(t_min)`` for every row, ``(B, n)`` in float64."""
        key = (tau, len(keys), n)
        if key in self._cache:
            return self._cache[key]
        a, b, idx = self.t_min, self.t_max, 0
        wa = torch.zeros(len(keys), n, dtype=torch.float64, device=keys.device)
        wb = math.sqrt(b - a) * normals(keys, 1, n, torch.float64)
        for level in range(1, self.depth + 1):
            m = (a + b) / 2
            z = normals(keys, (1 << level) + idx, n, torch.float64)     # node (level, idx)
            wm = (wa + wb) / 2 + math.sqrt((b - a) / 4) * z
            if tau < m:
                b, wb, idx = m, wm, 2 * idx
            else:
                a, wa, idx = m, wm, 2 * idx + 1
        w = wa + (wb - wa) * ((tau - a) / (b - a))
        self._cache[key] = w
        if len(self._cache) > 8:
            self._cache.popitem(last=False)
        return w

    def __call__(self, x: Tensor, t: Union[Tensor, float], s: Union[Tensor, float]) -> Tensor:
        t, s = float(t), float(s)
        if t == s:
            raise InputError("Brownian noise draws increments W(s) - W(t) over a move t -> s; "
                             f"this sampler asked for a draw at one time t = {t:g} "
                             "(Langevin or churn noise): use noise=None or 'indexed'")
        lo, hi = sorted((min(max(v, self.t_min), self.t_max) for v in (t, s)))
        keys, n = self.rows(x), x[0].numel()
        if hi == lo:                        # the move lies outside [t_min, t_max]
            return torch.zeros_like(x)
        dw = self._w(keys, hi, n) - self._w(keys, lo, n)
        scale = (1.0 if s > t else -1.0) / math.sqrt(hi - lo)
        return (dw * scale).to(x.dtype).reshape(x.shape)


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
