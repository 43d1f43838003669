"""What a solve integrates: `ODETerm` (a vector field) or `SDETerm` (drift and diffusion
driven by a Brownian motion), the first argument of `solve`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from .errors import InvalidInputError, describe

__all__ = ["ODETerm", "SDETerm"]


@dataclass(frozen=True)
class ODETerm:
    """``dy/dt = func(t, y)``; ``func`` a callable or ``nn.Module``."""

    func: Callable

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise InvalidInputError(f"ODETerm: `func` must be callable f(t, y); got "
                                    f"{describe(self.func)}")


@dataclass(frozen=True)
class SDETerm:
    """``dy = f(t, y) dt + g(t, y) dW``: ``sde`` follows the torchsde protocol (``f``, ``g``,
    ``noise_type``, ``sde_type``), ``brownian`` is the driving path (a `BrownianInterval`
    or any ``bm(ta, tb)``; None draws fresh counter-seeded noise), ``names`` remaps the
    method names as in `sdeint`."""

    sde: Any
    brownian: Any = None
    names: Optional[Dict[str, str]] = None
