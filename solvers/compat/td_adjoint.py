"""torchdiffeq's adjoint conventions on `solve_ode(gradient='backsolve')`.

torchdiffeq calls the adjoint ``norm`` on the tuple ``(t, y, adj_y, *adj_params)`` (``t``
the time adjoint, ``y`` flat for tuple states) and keeps the options dict on the output's
``grad_fn`` (``xs.grad_fn.adjoint_options``), where the norm can still be replaced before
the backward pass. `adjoint_norms` builds that dict and the norm the engine calls on its
flat augmented state ``[y, a, a_t, a_θ...]``; `AdjointOutput` exposes the dict.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Sequence, Tuple

import torch

from ..errors import InvalidInputError
from .td_options import Flat, mixed_norm

Tensor = torch.Tensor

__all__ = ["adjoint_norms", "augmented_parts", "AdjointOutput"]


def _torchdiffeq_norm(choice: Any, flat: Flat, state_norm: Callable) -> Callable:
    """The norm torchdiffeq uses on ``(t, y, adj_y, *adj_params)``."""
    def default(parts: Tuple[Tensor, ...]) -> Tensor:
        t, y, adj_y, *params = parts
        return _max(t.abs(), *_norms(state_norm, y, adj_y), mixed_norm(tuple(params)))

    def seminorm(parts: Tuple[Tensor, ...]) -> Tensor:
        t, y, adj_y, *_ = parts
        return _max(t.abs(), *_norms(state_norm, y, adj_y))

    if choice is None or choice == "default":
        return default
    if isinstance(choice, str) and choice == "seminorm":
        return seminorm
    if not callable(choice):
        raise InvalidInputError("`adjoint_options['norm']` must be 'seminorm' or a callable; "
                                f"got {choice!r}")
    if not flat.is_tuple:
        return choice

    def user(parts: Tuple[Tensor, ...]) -> Any:
        t, y, adj_y, *params = parts
        ys = () if y is None else flat.split(y)     # (no y in an implicit backward state)
        return choice((t, *ys, *flat.split(adj_y), *params))
    return user


def _norms(state_norm: Callable, *xs: Any) -> list:
    """``state_norm`` of each part that is present (an implicit backward state has no y)."""
    return [state_norm(x) for x in xs if x is not None]


def _max(*xs: Any) -> Tensor:
    return torch.stack([torch.as_tensor(x).reshape(()) for x in xs]).max()


def adjoint_norms(choice: Any, flat: Flat, state_norm: Callable, params: Sequence[Tensor]
                  ) -> Tuple[Dict[str, Any], Callable[[Tensor], Tensor]]:
    """``(options, engine_norm)``: torchdiffeq's options dict holding ``'norm'``, and the
    norm of the engine's flat augmented state, which looks the dict up at each call."""
    options: Dict[str, Any] = {"norm": _torchdiffeq_norm(choice, flat, state_norm)}
    parts_of = augmented_parts(flat, params)

    def engine_norm(z: Tensor) -> Tensor:
        out = options["norm"](parts_of(z))
        return torch.as_tensor(out, dtype=z.dtype, device=z.device).reshape(())
    return options, engine_norm


def augmented_parts(flat: Flat, params: Sequence[Tensor]
                    ) -> Callable[[Tensor], Tuple[Any, ...]]:
    """The engine's flat augmented state ``[y, a, a_t, a_θ...]`` as torchdiffeq's tuple
    ``(t, y, adj_y, *adj_params)`` (the adjoint norm's and adjoint callbacks' argument).
    The implicit methods' backward state has no ``y`` (it is read from the forward's dense
    output): there ``y`` is None."""
    n = flat.shape.numel()
    sizes = [n, n, 1] + [p.numel() for p in params]
    y_shape = flat.shape

    def parts(z: Tensor) -> Tuple[Any, ...]:
        z = z.reshape(-1)
        if z.numel() == sum(sizes) - n:
            y, (a, a_t, *ps) = None, torch.split(z, sizes[1:])
        else:
            y, a, a_t, *ps = torch.split(z, sizes)
            y = y.reshape(y_shape)
        return (a_t.reshape(()), y, a.reshape(y_shape),
                *(g.reshape(p.shape) for g, p in zip(ps, params)))
    return parts


class AdjointOutput(torch.autograd.Function):
    """Identity on the solution whose backward node carries ``adjoint_options``."""

    @staticmethod
    def forward(ctx: Any, options: Dict[str, Any], ys: Tensor) -> Tensor:
        ctx.adjoint_options = options
        return ys.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[None, Tensor]:
        return None, grad
