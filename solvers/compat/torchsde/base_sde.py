"""torchsde's SDE classes (`BaseSDE`, `SDEIto`, `SDEStratonovich`) and the two views the
drop-in solves through: `renamed` (torchsde's ``names``) and `LogqpSDE` (``logqp=True``).

`LogqpSDE` appends the log-ratio to the state: for posterior drift ``f``, prior drift ``h``
and diffusion ``g`` the extra coordinate has drift ``½ |u|²`` with ``g u = f - h`` (``u =
(f - h) / g`` for diagonal noise, the pseudo-inverse otherwise) and no diffusion, so its
increments along the path are the KL terms of the ELBO (Li et al. 2020).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from ...errors import InvalidInputError
from .settings import NOISE_TYPES, SDE_TYPES

Tensor = torch.Tensor

__all__ = ["BaseSDE", "SDEIto", "SDEStratonovich", "renamed", "LogqpSDE", "NAME_KEYS"]

# torchsde's `names` keys and the attribute each renames
NAME_KEYS = {"drift": "f", "diffusion": "g", "prior_drift": "h",
             "drift_and_diffusion": "f_and_g", "drift_and_diffusion_prod": "f_and_g_prod"}
_FUNCTIONS = ("f", "g", "h", "g_prod", "f_and_g", "f_and_g_prod")


class BaseSDE(nn.Module):
    """Base class of torchsde SDEs: an ``nn.Module`` with validated ``noise_type`` and
    ``sde_type`` attributes; subclasses define ``f``/``g`` (or ``f_and_g``, ``g_prod``,
    ``f_and_g_prod``) and, for ``logqp``, the prior drift ``h``."""

    def __init__(self, noise_type: str, sde_type: str) -> None:
        super().__init__()
        if noise_type not in NOISE_TYPES:
            raise InvalidInputError(
                f"Expected noise type in {NOISE_TYPES}, but found {noise_type}")
        if sde_type not in SDE_TYPES:
            raise InvalidInputError(f"Expected sde type in {SDE_TYPES}, but found {sde_type}")
        self.noise_type = noise_type
        self.sde_type = sde_type


class SDEIto(BaseSDE):
    """An Itô SDE."""

    def __init__(self, noise_type: str) -> None:
        super().__init__(noise_type=noise_type, sde_type=SDE_TYPES.ito)


class SDEStratonovich(BaseSDE):
    """A Stratonovich SDE."""

    def __init__(self, noise_type: str) -> None:
        super().__init__(noise_type=noise_type, sde_type=SDE_TYPES.stratonovich)


class _View:
    """The functions of an SDE under other attribute names (and its two types)."""

    def __init__(self, sde: Any, functions: Dict[str, Any]) -> None:
        self.noise_type = getattr(sde, "noise_type", None)
        self.sde_type = getattr(sde, "sde_type", None)
        for name, fn in functions.items():
            setattr(self, name, fn)


def renamed(sde: Any, names: Optional[Dict[str, str]]) -> Any:
    """``sde`` with torchsde's ``names`` applied (``{'drift': 'forward'}`` makes
    ``sde.forward`` the drift); ``sde`` itself when nothing is renamed."""
    if not names:
        return sde
    if not isinstance(names, dict):
        raise InvalidInputError(f"`names` must be a dict; got {type(names).__name__}")
    where = {attr: names.get(key, attr) for key, attr in NAME_KEYS.items()}
    functions = {}
    for attr in _FUNCTIONS:
        fn = getattr(sde, where.get(attr, attr), None)
        if fn is not None:
            functions[attr] = fn
    return _View(sde, functions)


def _stable_division(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """``a / b`` with ``|b|`` kept at least ``eps`` (its sign kept; zero counts as +)."""
    sign = torch.where(b >= 0, torch.ones_like(b), -torch.ones_like(b))
    return a / torch.where(b.abs().detach() > eps, b, eps * sign)


class LogqpSDE:
    """The SDE with the log-ratio appended to the state as its last coordinate (``logqp``)."""

    def __init__(self, sde: Any) -> None:
        missing = [n for n in ("f", "g", "h") if not callable(getattr(sde, n, None))]
        if missing:
            raise InvalidInputError(
                f"logqp=True needs the drift, diffusion and prior drift of the SDE (`f`, `g`, "
                f"`h`, or the names given for them); {type(sde).__name__} lacks {missing}")
        self.noise_type, self.sde_type = sde.noise_type, sde.sde_type
        self._f, self._g, self._h = sde.f, sde.g, sde.h
        self.diagonal = sde.noise_type == NOISE_TYPES.diagonal

    def _log_ratio_drift(self, f: Tensor, g: Tensor, h: Tensor) -> Tensor:
        if self.diagonal:
            u = _stable_division(f - h, g)
        else:
            u = torch.matmul(torch.linalg.pinv(g), (f - h).unsqueeze(-1))[..., 0]
        return 0.5 * (u * u).sum(dim=1, keepdim=True)

    def _augment_g(self, g: Tensor) -> Tensor:
        if self.diagonal:
            return torch.cat([g, g.new_zeros(g.shape[0], 1)], dim=1)
        return torch.cat([g, g.new_zeros(g.shape[0], 1, g.shape[-1])], dim=1)

    def f_and_g(self, t: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        y = y[:, :-1]
        f, g, h = self._f(t, y), self._g(t, y), self._h(t, y)
        return torch.cat([f, self._log_ratio_drift(f, g, h)], dim=1), self._augment_g(g)

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        y = y[:, :-1]
        f, g, h = self._f(t, y), self._g(t, y), self._h(t, y)
        return torch.cat([f, self._log_ratio_drift(f, g, h)], dim=1)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return self._augment_g(self._g(t, y[:, :-1]))
