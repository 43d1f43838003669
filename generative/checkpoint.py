"""Atomic, integrity-checked checkpoints loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain nested container of tensors and primitives (configs as plain dicts).
It is written to a temporary file ``.<name>.<pid>.<random>.tmp`` in the target directory,
flushed and fsync'ed, then moved over the target with ``os.replace``: a crash at any point
leaves either the old or the new checkpoint, never a torn one. Temporary files left by a
killed writer (its pid no longer running) are removed by the next save to that path and by
`remove_stale_temp_files`.

Integrity: the file is a standard ``torch.save`` zip archive whose zip comment is
``sdeflow-sha256:<hex>``, the SHA-256 of every byte before the hex digest. `load_checkpoint`
verifies it before unpickling, so any change to the file (a flipped bit anywhere, a
truncation) raises `CheckpointCorruptError`; the archive stays loadable by plain
``torch.load(path, weights_only=True)``. Checkpoints of format version 1 (written before the
hash existed) still load, with a `UserWarning` that they cannot be verified; saving them
again adds the hash. A version-2 file without a valid hash is refused.

`RunLock` is an exclusive lock on a directory (an ``flock``-ed file holding the owner's pid),
so that two processes never write the same run; a lock left by a dead process is free.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from .errors import GenerativeError

try:  # POSIX; elsewhere RunLock falls back to O_CREAT | O_EXCL with a pid check
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["save_checkpoint", "load_checkpoint", "is_hashed", "check_plain",
           "remove_stale_temp_files",
           "RunLock", "CheckpointError", "CheckpointNotFoundError", "CheckpointCorruptError",
           "RunLockedError", "FORMAT", "VERSION"]

FORMAT = "sdeflow-checkpoint"
VERSION = 2  # 2: SHA-256 trailer in the zip comment; 1: no hash (read with a warning)
_READS = (1, 2)
_PRIMITIVES = (bool, int, float, str, bytes, type(None), torch.dtype, torch.device)
_TAG = b"sdeflow-sha256:"
_TRAILER = len(_TAG) + 64
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory record: 22 bytes + comment
_CHUNK = 1 << 20

PathLike = Union[str, os.PathLike]


class CheckpointError(GenerativeError, RuntimeError):
    """A checkpoint could not be written or read."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint file at the given path."""


class CheckpointCorruptError(CheckpointError):
    """The file exists but is not a readable, intact sdeflow checkpoint."""


class RunLockedError(CheckpointError):
    """Another live process holds the lock of a run directory."""


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


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return False
    return True


def _temp_pattern(name: str) -> "re.Pattern[str]":
    # current writers: .<name>.<pid>.<token>.tmp; older sdeflow: .<name>.<mkstemp chars>.tmp
    return re.compile(rf"^\.{re.escape(name)}\.(?:(\d+)\.)?[A-Za-z0-9_]+\.tmp$")


def remove_stale_temp_files(path: PathLike) -> List[Path]:
    """Delete the temporary files of interrupted writes of checkpoint ``path``: those whose
    writer pid is no longer running, and pid-less ones (older sdeflow) older than ``path``
    itself. Returns the removed paths; never raises for files it cannot remove."""
    path = Path(path)
    pattern = _temp_pattern(path.name)
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    try:
        target_mtime: Optional[float] = path.stat().st_mtime
    except OSError:
        target_mtime = None
    removed = []
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None:
            continue
        try:
            if m.group(1) is not None:
                stale = not _pid_alive(int(m.group(1)))
            else:
                stale = target_mtime is not None and entry.stat().st_mtime <= target_mtime
            if stale:
                entry.unlink()
                removed.append(entry)
        except OSError:
            continue
    return removed


def _seal(archive: bytes) -> bytes:
    """Put the SHA-256 trailer into the zip comment of a ``torch.save`` archive."""
    if len(archive) < 22 or archive[-22:-18] != _EOCD or archive[-2:] != b"\0\0":
        raise CheckpointError("torch.save wrote an archive without a plain zip end record; "
                              "cannot add the integrity hash")
    body = archive[:-2] + _TRAILER.to_bytes(2, "little") + _TAG
    return body + hashlib.sha256(body).hexdigest().encode()


def save_checkpoint(path: PathLike, state: Mapping[str, Any]) -> Path:
    """Atomically write ``state`` (a plain mapping, see `check_plain`) to ``path``."""
    path = Path(path)
    state = dict(state)
    check_plain(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    payload = {"format": FORMAT, "version": VERSION, "state": state}
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            buffer = io.BytesIO()
            torch.save(payload, buffer)
            fh.write(_seal(buffer.getbuffer().tobytes()))
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


def _verify(path: Path) -> bool:
    """Check the SHA-256 trailer; ``True`` if verified, ``False`` for a file without one
    (an older checkpoint, or not an sdeflow file). Raises `CheckpointCorruptError` when a
    trailer is present but wrong, or the zip end record is damaged."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 22 - _TRAILER))
        tail = fh.read()
        if tail[-22:-18] == _EOCD and tail[-2:] == b"\0\0":
            return False  # no comment: torch.save's own layout
        if len(tail) < 22 + _TRAILER or tail[:4] != _EOCD:
            raise CheckpointCorruptError(
                f"checkpoint {str(path)!r} is corrupt: its zip end record or integrity "
                "trailer is damaged or truncated")
        stored = tail[-64:]
        if (int.from_bytes(tail[20:22], "little") != _TRAILER
                or tail[22:22 + len(_TAG)] != _TAG):
            raise CheckpointCorruptError(
                f"checkpoint {str(path)!r} is corrupt: its integrity trailer (zip comment "
                f"{_TAG.decode()}<hex>) is damaged")
        digest = hashlib.sha256()
        fh.seek(0)
        remaining = size - 64
        while remaining > 0:
            chunk = fh.read(min(_CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    if digest.hexdigest().encode() != stored:
        raise CheckpointCorruptError(
            f"checkpoint {str(path)!r} is corrupt: its SHA-256 does not match the stored "
            f"hash (stored {stored[:12].decode('ascii', 'replace')}..., file "
            f"{digest.hexdigest()[:12]}...); the file was modified or damaged after writing")
    return True


def is_hashed(path: PathLike) -> bool:
    """Whether the checkpoint at ``path`` carries a (valid) SHA-256 trailer: ``False`` for one
    written before the hash existed; `CheckpointCorruptError` when the trailer is damaged or
    does not match."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        return _verify(path)
    except OSError as err:
        raise CheckpointCorruptError(f"checkpoint {str(path)!r} cannot be read: {err}") from err


def load_checkpoint(path: PathLike, map_location: Any = "cpu", *,
                    warn_unhashed: bool = True) -> Dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`: verify its SHA-256, then load it with
    ``weights_only=True``. Raises `CheckpointNotFoundError` or `CheckpointCorruptError`.
    A version-1 file (no hash) loads with a `UserWarning` unless ``warn_unhashed=False``."""
    path = Path(path)
    verified = is_hashed(path)
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
    version = payload.get("version")
    if version not in _READS:
        raise CheckpointCorruptError(f"checkpoint {str(path)!r} has format version "
                                     f"{version!r}; this sdeflow reads versions "
                                     f"{', '.join(map(str, _READS))}")
    if version >= 2 and not verified:
        raise CheckpointCorruptError(f"checkpoint {str(path)!r} (format version {version}) "
                                     "has lost its integrity hash (zip comment); it was "
                                     "modified after writing")
    if version == 1 and warn_unhashed:
        warnings.warn(f"checkpoint {str(path)!r} was written by an older sdeflow (format "
                      "version 1, no integrity hash): it cannot be checked for corruption; "
                      "save it again to add the hash", UserWarning, stacklevel=2)
    return payload["state"]


class RunLock:
    """Exclusive lock on ``directory`` for one writing process: ``<directory>/<name>`` is
    ``flock``-ed and holds the owner's pid. A second `acquire` (from any process) raises
    `RunLockedError` naming that pid and the lock path. The kernel drops the lock when its
    process dies, so a lock file left by a killed run is simply taken over."""

    def __init__(self, directory: PathLike, name: str = ".train.lock") -> None:
        self.path = Path(directory) / name
        self._fd: Optional[int] = None

    def _owner(self) -> str:
        try:
            text = self.path.read_text().strip()
        except OSError:
            return "unknown"
        return text or "unknown"

    def _busy(self) -> RunLockedError:
        return RunLockedError(
            f"{str(self.path.parent)!r} is in use by another training process (pid "
            f"{self._owner()}, lock file {str(self.path)!r}); wait for it to finish or use "
            "another output directory")

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            raise self._busy()
        for _ in range(50):  # retried only when the file was replaced under us
            if fcntl is None:  # pragma: no cover - non-POSIX fallback
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    owner = self._owner()
                    if owner.isdigit() and not _pid_alive(int(owner)):
                        self.path.unlink(missing_ok=True)
                        continue
                    raise self._busy() from None
            else:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise self._busy() from None
                try:  # the holder may have unlinked the file between our open and flock
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return self
        raise self._busy()  # pragma: no cover

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
