"""The cached colour score model: a small VP score model on the 8x8 colour patches
(`generative.colour_data`), for colorization and super-resolution
(``benchmarks/inverse_colour.py``, ``sdeflow inpaint --task colorize|superres``).

As the demo's digits model, it is trained once into the user cache directory
(`generative.cache.cache_dir`) under a hash of its training config (`COLOUR_MODEL_CONFIG`),
so later runs load it; an interrupted training resumes from its last checkpoint, an unusable
entry (corrupt, foreign) is trained afresh.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .cache import cache_dir, config_hash, load_cached
from .checkpoint import CheckpointError
from .data import load_data
from .models import LoadedModel, ModelError, load_model, make_spec, train_model
from .train import CHECKPOINT_NAME, TrainConfig

__all__ = ["COLOUR_MODEL_CONFIG", "colour_model_dir", "load_colour_model"]

# A measured choice: this MLP takes about 13 ms a step on one idle CPU core (8000 steps: about
# 2 minutes; its noise prediction at t = T is 0.5% short of x_t); a U-Net of 16 channels
# takes 110 ms, and 1000 of its steps (or 4000 of a 512-wide MLP) leave it 1% short, which
# the 1 / alpha(T) = 150 of the VP SDE turns into diverging samples.
COLOUR_MODEL_CONFIG: Dict[str, Any] = {
    "version": 1, "data": "colour", "sde": "vp", "net": "mlp",
    "net_kwargs": {"width": 256, "depth": 3}, "steps": 8000, "batch_size": 128, "lr": 1e-3,
    "warmup_steps": 100, "ema_decay": 0.999, "seed": 0,
}


def colour_model_dir(config: Optional[Mapping[str, Any]] = None) -> Path:
    """The cache directory of the colour model of ``config`` (default `COLOUR_MODEL_CONFIG`)."""
    cfg = dict(COLOUR_MODEL_CONFIG if config is None else config)
    return cache_dir() / f"colour-{cfg['sde']}-{cfg['data']}-{config_hash(cfg)}"


def _usable_step(ckpt: Path, log: Callable[[str], None]) -> Optional[int]:
    """The step of the cached checkpoint, None when there is none or it is unusable."""
    state = load_cached(ckpt, log)
    if state is None:
        return None
    try:
        load_model(ckpt)  # its meta and weights checked too
        return int(state["step"])
    except (CheckpointError, ModelError, KeyError, TypeError, ValueError) as err:
        log(f"cached colour model unusable ({err}); retraining it")
        return None


def load_colour_model(config: Optional[Mapping[str, Any]] = None, *, retrain: bool = False,
                      progress: bool = True, log: Optional[Callable[[str], None]] = None
                      ) -> Tuple[LoadedModel, Dict[str, Any]]:
    """The colour model of ``config`` (default `COLOUR_MODEL_CONFIG`), trained into the cache
    first when needed (``retrain``: afresh). Returns ``(loaded model, info)``, ``info`` with
    ``checkpoint``, ``cached``, ``train_seconds`` and ``steps``."""
    cfg = dict(COLOUR_MODEL_CONFIG if config is None else config)
    say = log if log is not None else (lambda msg: None)
    ckdir = colour_model_dir(cfg)
    ckpt = ckdir / CHECKPOINT_NAME
    if retrain and ckdir.exists():
        shutil.rmtree(ckdir)
    step = _usable_step(ckpt, say) if ckpt.is_file() else None
    if step is not None and step >= cfg["steps"]:
        say(f"using the cached colour model {ckpt}")
        return load_model(ckpt), {"checkpoint": str(ckpt), "cached": True,
                                  "train_seconds": 0.0, "steps": step}
    if step is None and ckdir.exists():
        shutil.rmtree(ckdir)
    data = load_data(cfg["data"])
    spec = make_spec("score", data, net=cfg["net"], net_kwargs=cfg["net_kwargs"],
                     sde=cfg["sde"])
    tc = TrainConfig(steps=cfg["steps"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                     warmup_steps=cfg["warmup_steps"], ema_decay=cfg["ema_decay"],
                     seed=cfg["seed"], log_every=min(500, cfg["steps"]),
                     ckpt_every=min(1000, cfg["steps"]), progress=progress)
    say(f"training the colour model ({cfg['net']} {cfg['net_kwargs']}, {cfg['steps']} steps) "
        f"-> {ckdir}")
    start = time.perf_counter()
    result = train_model(data, spec, tc, ckdir, resume=True)
    (ckdir / "colour_model_config.json").write_text(json.dumps(cfg, indent=2))
    return load_model(ckpt), {"checkpoint": str(ckpt), "cached": False,
                              "train_seconds": time.perf_counter() - start,
                              "steps": result.step}
