"""The user cache directory (trained feature classifier, demo models)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

__all__ = ["cache_dir", "config_hash"]


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
