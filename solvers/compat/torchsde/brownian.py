"""torchsde's Brownian motions on `solvers.brownian.BrownianInterval` (a virtual Brownian
tree with counter-based seeds: every query is deterministic given ``entropy`` and
independent of the order of queries).

`BrownianInterval` takes torchsde's arguments and query semantics (``ta <= tb``, times
outside ``[t0, t1]`` clamped with a warning, ``return_U`` / ``return_A``); ``dt``,
``pool_size``, ``cache_size`` and ``halfway_tree`` are accepted and recorded (the tree is
always query-order independent, which is what ``halfway_tree`` asks for). ``tol=0`` (the
default, as torchsde) resolves the path to ``2**-40`` of the span. `BrownianPath` and
`BrownianTree` are views of one with an initial value ``w0``; `ReverseBrownian` runs one
backwards in time.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional, Tuple, Union

import torch

from ...brownian.tree import BrownianInterval as _Tree
from ...errors import InvalidInputError
from ...validation import is_real

Tensor = torch.Tensor

__all__ = ["BaseBrownian", "BrownianInterval", "BrownianPath", "BrownianTree",
           "ReverseBrownian", "brownian_interval_like"]


class BaseBrownian:
    """What every torchsde Brownian motion offers: ``bm(ta, tb, return_U, return_A)`` and
    ``shape``, ``dtype``, ``device``, ``levy_area_approximation``."""

    def __call__(self, ta: Any, tb: Any = None, return_U: bool = False,
                 return_A: bool = False) -> Any:
        raise NotImplementedError

    def size(self) -> torch.Size:
        return self.shape


def _scalar(name: str, x: Any) -> float:
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        x = x.item()
    if not is_real(x):
        raise InvalidInputError(f"`{name}` should be a float or 0-d torch.Tensor; got {x!r}")
    return float(x)


class BrownianInterval(BaseBrownian, _Tree):
    """torchsde's ``BrownianInterval(t0, t1, size, dtype, device, entropy, dt, tol,
    pool_size, cache_size, halfway_tree, levy_area_approximation, W, H)``."""

    def __init__(self, t0: Any = 0.0, t1: Any = 1.0, size: Optional[Tuple[int, ...]] = None,
                 dtype: Optional[torch.dtype] = None,
                 device: Optional[Union[str, torch.device]] = None,
                 entropy: Optional[int] = None, dt: Any = None, tol: Any = 0.0,
                 pool_size: int = 8, cache_size: Optional[int] = 45,
                 halfway_tree: bool = False, levy_area_approximation: str = "none",
                 W: Optional[Tensor] = None, H: Optional[Tensor] = None) -> None:
        t0, t1, tol = _scalar("t0", t0), _scalar("t1", t1), _scalar("tol", tol)
        if dt is not None:
            dt = _scalar("dt", dt)
        if t0 > t1:
            raise InvalidInputError(
                f"Initial time {t0} should be less than terminal time {t1}.")
        if halfway_tree and tol <= 0.0:
            raise InvalidInputError("`tol` should be positive.")
        if halfway_tree and dt is not None:
            raise InvalidInputError(
                "`dt` is not used and should be set to `None` if `halfway_tree` is True.")
        if tol < 0.0:
            raise InvalidInputError("`tol` should be non-negative.")
        super().__init__(t0, t1, size, dtype=dtype, device=device, entropy=entropy,
                         levy_area_approximation=levy_area_approximation, tol=tol, W=W, H=H)
        self.dt, self.pool_size, self.cache_size = dt, pool_size, cache_size
        self.halfway_tree = halfway_tree

    def _clamp(self, name: str, t: float) -> float:
        if t < self.t0:
            warnings.warn(f"Should have {name}>=t0 but got {name}={t} and t0={self.t0}.")
            return self.t0
        if t > self.t1:
            warnings.warn(f"Should have {name}<=t1 but got {name}={t} and t1={self.t1}.")
            return self.t1
        return t

    def __call__(self, ta: Any, tb: Any = None, return_U: bool = False,
                 return_A: bool = False) -> Any:
        """torchsde's query: ``W(tb) - W(ta)`` (``tb`` None: from ``t0`` to ``ta``), then
        ``U`` if ``return_U`` and ``A`` if ``return_A``."""
        if tb is None:
            warnings.warn(f"{type(self).__name__} is optimised for interval-based queries, "
                          f"not point evaluation.")
            ta, tb, tb_name = self.t0, ta, "ta"
        else:
            tb_name = "tb"
        ta, tb = self._clamp("ta", float(ta)), self._clamp(tb_name, float(tb))
        if ta > tb:
            raise RuntimeError(f"Query times ta={ta:.3f} and tb={tb:.3f} must respect ta <= tb.")
        return _Tree.__call__(self, ta, tb, return_U=return_U, return_A=return_A)

    def __repr__(self) -> str:
        return (f"BrownianInterval(t0={self.t0:.3f}, t1={self.t1:.3f}, size={self.size}, "
                f"dtype={self.dtype}, device={repr(self.device)}, entropy={self.entropy}, "
                f"dt={self.dt}, tol={self.tol}, pool_size={self.pool_size}, "
                f"cache_size={self.cache_size}, levy_area_approximation="
                f"{repr(self.levy_area_approximation)})")


class _WithInitialValue(BaseBrownian):
    """A `BrownianInterval` whose point queries ``bm(t)`` return ``w0 + W(t) - W(t0)``."""

    _interval: BrownianInterval
    _w0: Tensor

    def __call__(self, t: Any, tb: Any = None, return_U: bool = False,
                 return_A: bool = False) -> Any:
        with warnings.catch_warnings():
            if tb is None:
                warnings.simplefilter("ignore")    # point queries are what these are for
            out = self._interval(t, tb, return_U=return_U, return_A=return_A)
        if tb is None and not return_U and not return_A:
            out = out + self._w0
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(interval={self._interval})"

    shape = property(lambda self: self._interval.shape)
    dtype = property(lambda self: self._interval.dtype)
    device = property(lambda self: self._interval.device)
    levy_area_approximation = property(lambda self: self._interval.levy_area_approximation)


class BrownianPath(_WithInitialValue):
    """torchsde's ``BrownianPath(t0, w0)``: a Brownian motion on ``[t0, t0 + 1]`` started at
    ``w0`` (``window_size`` is accepted and unused, as in torchsde)."""

    def __init__(self, t0: Any, w0: Tensor, window_size: int = 8) -> None:
        t0 = _scalar("t0", t0)
        self._w0 = w0
        self._interval = BrownianInterval(t0, t0 + 1, size=w0.shape, dtype=w0.dtype,
                                          device=w0.device, cache_size=None)


class BrownianTree(_WithInitialValue):
    """torchsde's ``BrownianTree(t0, w0, t1, w1, entropy, tol)``: a Brownian motion on
    ``[t0, t1]`` (default ``t0 + 1``) from ``w0``, through ``w1`` at ``t1`` when given;
    ``pool_size``, ``cache_depth``, ``safety`` are accepted and unused."""

    def __init__(self, t0: Any, w0: Tensor, t1: Any = None, w1: Optional[Tensor] = None,
                 entropy: Optional[int] = None, tol: float = 1e-6, pool_size: int = 24,
                 cache_depth: int = 9, safety: Optional[float] = None) -> None:
        t0 = _scalar("t0", t0)
        t1 = t0 + 1 if t1 is None else _scalar("t1", t1)
        self._w0 = w0
        self._interval = BrownianInterval(t0, t1, size=w0.shape, dtype=w0.dtype,
                                          device=w0.device, entropy=entropy, tol=tol,
                                          pool_size=pool_size, halfway_tree=True,
                                          W=None if w1 is None else w1 - w0)


class ReverseBrownian(BaseBrownian):
    """``base`` backwards in time: ``bm(ta, tb)`` is ``base(-tb, -ta)``."""

    def __init__(self, base_brownian: Any) -> None:
        self.base_brownian = base_brownian

    def __call__(self, ta: Any, tb: Any = None, return_U: bool = False,
                 return_A: bool = False) -> Any:
        return self.base_brownian(-tb, -ta, return_U=return_U, return_A=return_A)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_brownian={self.base_brownian})"

    shape = property(lambda self: self.base_brownian.shape)
    dtype = property(lambda self: self.base_brownian.dtype)
    device = property(lambda self: self.base_brownian.device)
    levy_area_approximation = property(lambda self: self.base_brownian.levy_area_approximation)


def brownian_interval_like(y: Tensor, t0: Any = 0.0, t1: Any = 1.0,
                           size: Optional[Tuple[int, ...]] = None,
                           dtype: Optional[torch.dtype] = None,
                           device: Optional[Union[str, torch.device]] = None,
                           **kwargs: Any) -> BrownianInterval:
    """A `BrownianInterval` with ``y``'s shape, dtype and device unless given."""
    return BrownianInterval(t0=t0, t1=t1, size=y.shape if size is None else size,
                            dtype=y.dtype if dtype is None else dtype,
                            device=y.device if device is None else device, **kwargs)
