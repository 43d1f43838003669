"""Exponential moving average of a model's weights."""
from __future__ import annotations

import contextlib
import copy
from typing import Any, Dict, Iterator

import torch
from torch import nn

from .errors import InputError

__all__ = ["EMA", "checkpoint_weights"]


class EMA:
    """Shadow copy of a model updated as ``θ_ema ← d θ_ema + (1 - d) θ``.

    With ``warmup`` the decay ramps up as ``d_n = min(decay, (1 + n) / (10 + n))`` after
    n updates, so short runs are not dominated by the initial weights. Buffers are copied.
    ``ema.model`` is an eval-mode copy usable directly for sampling.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise InputError(f"decay must be in [0, 1); got {decay!r}")
        self.decay, self.warmup, self.num_updates = decay, warmup, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        for p_ema, p in zip(self.model.parameters(), model.parameters()):
            p_ema.lerp_(p.detach(), 1.0 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s weights with the averaged ones."""
        model.load_state_dict(self.model.state_dict())

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into ``model`` (restored on exit)."""
        saved = copy.deepcopy(model.state_dict())
        self.copy_to(model)
        try:
            yield model
        finally:
            model.load_state_dict(saved)

    def state_dict(self) -> Dict[str, Any]:
        return {"model": self.model.state_dict(), "decay": self.decay,
                "warmup": self.warmup, "num_updates": self.num_updates}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.decay, self.warmup = float(state["decay"]), bool(state["warmup"])
        self.num_updates = int(state["num_updates"])


def checkpoint_weights(state: Dict[str, Any], use_ema: bool = True) -> Dict[str, Any]:
    """The weights to evaluate a `generative.train` checkpoint ``state`` with: its EMA's when
    ``use_ema`` and it has one, else the raw trained weights."""
    ema = state.get("ema")
    if use_ema and ema is not None:
        if not isinstance(ema, dict) or "model" not in ema:
            raise InputError(f"state['ema'] must be a dict holding the averaged weights under "
                             f"'model'; got {type(ema).__name__}")
        return ema["model"]
    if "model" not in state:
        raise InputError("the checkpoint holds no weights (state['model'] is missing)")
    return state["model"]
