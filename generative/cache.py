"""The user cache directory (trained feature classifier, demo models) and its entries."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from .checkpoint import CheckpointError, is_hashed, load_checkpoint, save_checkpoint

__all__ = ["cache_dir", "config_hash", "load_cached"]


def cache_dir() -> Path:
    """``$SDEFLOW_CACHE``, else ``$XDG_CACHE_HOME/sdeflow``, else ``~/.cache/sdeflow``."""
    if os.environ.get("SDEFLOW_CACHE"):
        return Path(os.environ["SDEFLOW_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "sdeflow"


def config_hash(config: Mapping[str, Any], length: int = 16) -> str:
    """A stable hex digest of a JSON-serialisable config (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def load_cached(path: Path, log: Optional[Callable[[str], None]] = None
                ) -> Optional[Dict[str, Any]]:
    """The checkpoint state of cache entry ``path``, or ``None`` when there is none or it is
    unusable (corrupt, foreign: the caller rebuilds it and overwrites the file; ``log`` gets
    the reason). An entry written before checkpoints carried a hash is re-saved with one, so
    it is verified from then on."""
    if not path.is_file():
        return None
    try:
        hashed = is_hashed(path)
        state = load_checkpoint(path, warn_unhashed=False)
        if not hashed:
            save_checkpoint(path, state)
    except (CheckpointError, OSError) as err:
        if log is not None:
            log(f"cache entry {str(path)!r} is unusable ({err}); rebuilding it")
        return None
    return state
