"""Atomic checkpoints loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain nested container of tensors and primitives (RNG states as
tensors, configs as plain dicts). It is written to a temporary file in the target
directory, flushed and fsync'ed, then moved over the target with ``os.replace``: a crash
at any point leaves either the old or the new checkpoint, never a torn one.
"""
from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "check_plain", "CheckpointError",
           "CheckpointNotFoundError", "CheckpointCorruptError", "FORMAT", "VERSION"]

FORMAT = "sdeflow-checkpoint"
VERSION = 1
_PRIMITIVES = (bool, int, float, str, bytes, type(None), torch.dtype, torch.device)

PathLike = Union[str, os.PathLike]


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint file at the given path."""


class CheckpointCorruptError(CheckpointError):
    """The file exists but is not a readable sdeflow checkpoint."""


def check_plain(obj: Any, where: str = "state") -> None:
    """Raise `TypeError` unless ``obj`` is tensors / primitives in dicts, lists, tuples."""
    if isinstance(obj, (torch.Tensor, torch.Size) + _PRIMITIVES):
        return
    if isinstance(obj, (dict, OrderedDict)):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key of type {type(k).__name__}; "
                                "checkpoint keys must be str or int")
            check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(obj).__name__}; a checkpoint holds only tensors, "
                    "primitives (bool/int/float/str/None) and dicts/lists/tuples of them, "
                    "so that it loads with torch.load(weights_only=True)")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory fds (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: PathLike, state: Mapping[str, Any]) -> Path:
    """Atomically write ``state`` (a plain mapping, see `check_plain`) to ``path``."""
    path = Path(path)
    state = dict(state)
    check_plain(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "state": state}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise CheckpointCorruptError(
            f"checkpoint {str(path)!r} is corrupt or not loadable with weights_only=True "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not (isinstance(payload, dict) and payload.get("format") == FORMAT
            and isinstance(payload.get("state"), dict)):
        raise CheckpointCorruptError(f"{str(path)!r} is not an sdeflow checkpoint "
                                     f"(expected format {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise CheckpointCorruptError(f"checkpoint {str(path)!r} has format version "
                                     f"{payload.get('version')!r}; this sdeflow reads {VERSION}")
    return payload["state"]
