"""Checks and faults of the ``sdeflow`` CLI, before and around any work: `CLIError` (one
``sdeflow: error: ...`` line, status 2), argparse types that range-check and name the flag,
output paths (suffix, directory or file, name length, writability), write failures turned
into messages (a full disk, torch's writer), memory estimates that refuse sizes which
cannot fit, and the options of ``sdeflow inpaint --task ...`` checked against each other
and the model."""
from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Sequence

import torch

from .checkpoint import CheckpointError
from .errors import GenerativeError

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = ["CLIError", "number_type", "positive_int", "positive_float", "nonneg_float",
           "nonneg_int", "EMA_DECAY", "os_reason", "is_torch_write_failure", "is_out_of_memory",
           "first_line", "writing", "output_file", "output_dir", "hidden_units",
           "check_train_size", "check_sample_size", "FACTOR", "inverse_settings"]


class CLIError(GenerativeError):
    """A user-facing error: printed as ``sdeflow: error: <message>``, exit status 2."""


# --------------------------------------------------------------------------- argument types

def number_type(name: str, cast: Callable[[str], Any], valid: Callable[[Any], bool],
                expected: str) -> Callable[[str], Any]:
    """An argparse ``type`` that casts and range-checks, naming the option on failure."""
    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"{name} must be {expected}; got {text!r}")
        return value
    return parse


def positive_int(name: str) -> Callable[[str], int]:
    return number_type(name, int, lambda v: v >= 1, "an integer >= 1")


def positive_float(name: str) -> Callable[[str], float]:
    return number_type(name, float, lambda v: v > 0 and math.isfinite(v), "a positive number")


def nonneg_float(name: str) -> Callable[[str], float]:
    return number_type(name, float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0")


def nonneg_int(name: str) -> Callable[[str], int]:
    return number_type(name, int, lambda v: v >= 0, "an integer >= 0")


EMA_DECAY = number_type("--ema-decay", float, lambda v: 0 <= v < 1, "a number in [0, 1)")


# --------------------------------------------------------------------------- outputs and faults

# the most bytes a name may have on most file systems (POSIX NAME_MAX); the nearest existing
# directory's own limit is asked where the platform tells
_NAME_MAX = 255
# torch.save's C++ writer reports a failed write (a full disk, a vanished file) like this
_TORCH_WRITE_FAILURES = ("inline_container.cc", "PytorchStreamWriter failed", "file write failed")
_OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "not enough memory")


def os_reason(err: OSError) -> str:
    """A short reason for a failed file operation (ENOSPC is "no space left on device")."""
    if err.errno == errno.ENOSPC:
        return "no space left on device"
    if err.errno == errno.ENAMETOOLONG:
        return "file name too long"
    if err.errno == errno.EISDIR:
        return "it is a directory"
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a part of the path is a file, not a directory"
    return (err.strerror or str(err)).rstrip(".").lower()


def is_torch_write_failure(err: BaseException) -> bool:
    return isinstance(err, RuntimeError) and any(s in str(err) for s in _TORCH_WRITE_FAILURES)


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and any(s in str(err).lower() for s in _OUT_OF_MEMORY))


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn a failed write of ``what`` (an OSError, or torch's RuntimeError for a full disk)
    into a `CLIError` that says why."""
    try:
        yield
    except CheckpointError:  # CheckpointNotFoundError is an OSError too; it says enough
        raise
    except OSError as err:
        raise CLIError(f"writing {what} failed: {os_reason(err)}") from err
    except RuntimeError as err:
        if not is_torch_write_failure(err):
            raise
        raise CLIError(f"writing {what} failed: no space left on device (or the file system "
                       f"refused the write; torch: {first_line(err)})") from err


def _name_max(path: Path) -> int:
    """The longest name the file system under ``path`` allows (its nearest existing
    ancestor's ``PC_NAME_MAX``)."""
    for parent in path.parents:
        try:
            if parent.is_dir():
                return int(os.pathconf(parent, "PC_NAME_MAX"))
        except (OSError, ValueError, AttributeError):
            return _NAME_MAX
    return _NAME_MAX


def _check_names(flag: str, path: Path, longest_extra: int = 0) -> None:
    """Every component of ``path`` (the last one plus ``longest_extra`` bytes, for names
    derived from it) fits the file system's name length."""
    limit = _name_max(path)
    parts = path.parts
    for i, part in enumerate(parts):
        size = len(part.encode()) + (longest_extra if i == len(parts) - 1 else 0)
        if size > limit:
            raise CLIError(f"{flag} {str(path)!r}: the name {part[:24]!r}... is too long "
                           f"({size} bytes with the names derived from it; the file system "
                           f"allows {limit})")


def _make_dir(flag: str, directory: Path, shown: Optional[str] = None) -> None:
    """Create ``directory`` (and parents) and check that a file can be created in it
    (errors quote ``shown``, the option's value, default the directory)."""
    shown = str(directory) if shown is None else shown
    for parent in (directory, *directory.parents):
        if parent.exists() and not parent.is_dir():
            raise CLIError(f"{flag} {shown!r}: {str(parent)!r} is a file, not a directory")
        if parent.exists():
            break
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".sdeflow-", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise CLIError(f"{flag} {shown!r}: cannot write in {str(directory)!r}: "
                       f"{os_reason(err)}") from err


def output_file(flag: str, value: Optional[str], suffix: str,
                beside: Sequence[str] = ()) -> Optional[Path]:
    """Check an output file option before any work: not empty, ends with ``suffix``, not a
    directory, names that fit, a writable directory. ``beside`` lists the suffixes of the
    files written next to it (``NAME.json`` for ``NAME.png``), so none of them collide."""
    if value is None:
        return None
    if not value.strip():
        raise CLIError(f"{flag} must be a file path ending in {suffix}; got an empty string")
    path = Path(value)
    if path.suffix.lower() != suffix:
        also = f" ({', '.join('NAME' + s for s in beside)} are written beside it)" if beside \
            else ""
        raise CLIError(f"{flag} must be a path ending in {suffix}{also}; got {value!r}")
    _check_names(flag, path, longest_extra=max((len(s) for s in beside), default=0)
                 + len(".tmp") + 1)
    for target in (path, *(path.with_suffix(s) for s in beside)):
        if target.is_dir():
            raise CLIError(f"{flag} {value!r}: {str(target)!r} is a directory; expected a "
                           "file path")
    _make_dir(flag, path.parent, value)
    return path


def output_dir(flag: str, value: str) -> Path:
    """Check an output directory option before any work (see `output_file`)."""
    if not value.strip():
        raise CLIError(f"{flag} must be a directory path; got an empty string (write . for "
                       "the current directory)")
    path = Path(value)
    _check_names(flag, path, longest_extra=0)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{flag} {value!r} is a file; expected a directory")
    _make_dir(flag, path, value)
    return path


# --------------------------------------------------------------------------- size estimates

def _available_bytes(device: Optional[torch.device] = None) -> Optional[int]:
    """Free memory on ``device`` (CUDA: the driver's count; CPU: MemAvailable, else the
    physical memory); ``None`` where it cannot be told."""
    if device is not None and device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def _check_size(flag: str, value: int, estimate: float, formula: str,
                device: Optional[torch.device] = None) -> None:
    """Refuse ``flag value`` up front when the memory it needs (``estimate`` bytes, worked
    out as ``formula``) exceeds what the device has free."""
    free = _available_bytes(device)
    if free is not None and estimate > free:
        raise CLIError(f"{flag} {value} needs about {_bytes(estimate)} ({formula}) but "
                       f"{_bytes(free)} is available on {device or 'cpu'}; lower {flag}")


def hidden_units(net: str, net_kwargs: Dict[str, Any], numel: int) -> int:
    """Rough activation count per example of a network (for the size estimates)."""
    if net == "unet":
        return 8 * int(net_kwargs.get("base_channels") or 32) * numel
    return int(net_kwargs.get("width") or 256) * int(net_kwargs.get("depth") or 3)


# buffers per value kept alive by a training step (inputs, noise, targets, activations and
# their gradients) and by a sampler step (state, noise, score, stage values)
_TRAIN_BUFFERS = 8
_SAMPLE_BUFFERS = 8
# float64 arrays of length nfe + 1 a sampler may build (times, sigmas, alphas, log-SNRs)
_GRID_BUFFERS = 4


def check_train_size(batch_size: int, numel: int, hidden: int) -> None:
    per_example = 4 * _TRAIN_BUFFERS * (numel + hidden)
    _check_size("--batch-size", batch_size, batch_size * per_example,
                f"{batch_size} examples x ({numel} values + {hidden} activations) x 4 bytes "
                f"x {_TRAIN_BUFFERS} buffers")


def check_sample_size(n: int, nfe: Optional[int], spec: ModelSpec, chunk: int,
                      device: Optional[torch.device]) -> None:
    numel = int(math.prod(spec.event_shape))
    hidden = hidden_units(spec.net, spec.net_kwargs, numel)
    b = min(n, chunk)
    _check_size("--n", n, 4 * (2 * n * numel + _SAMPLE_BUFFERS * b * (numel + hidden)),
                f"{n} samples x {numel} values x 4 bytes x 2 copies + a chunk of {b} in "
                "flight", device)
    if nfe is not None:
        _check_size("--nfe", nfe, 8 * _GRID_BUFFERS * (nfe + 1),
                    f"{_GRID_BUFFERS} time grids of {nfe + 1} float64 values", device)


# --------------------------------------------------------------------------- inverse tasks

FACTOR = number_type("--factor", int, lambda v: v >= 2, "an integer >= 2")
# `--mode`, inpainting's old option, in terms of `--method`
_OLD_MODES = {"replace": "replace", "conditional": "pigdm"}


def inverse_settings(args: argparse.Namespace, event_shape: Sequence[int],
                     ckpt: str) -> Dict[str, Any]:
    """The checked settings of ``sdeflow inpaint --task ...`` for a model of images
    ``event_shape``: ``task``, ``method`` (``--mode`` mapped onto it), ``scale`` (pigdm),
    ``mask`` (inpaint) and ``factor`` (superres); a `CLIError` names the flag at fault."""
    task, shape = args.task, tuple(event_shape)
    if len(shape) != 3:
        what = "fills in pixels of" if task == "inpaint" else "restores"
        raise CLIError(f"{task} {what} images (C, H, W); {ckpt!r} is a model of vectors of "
                       f"shape {shape}")
    for flag, value, applies in (("--mask", args.mask, "inpaint"),
                                 ("--factor", args.factor, "superres"),
                                 ("--mode", args.mode, "inpaint")):
        if value is not None and task != applies:
            raise CLIError(f"{flag} applies to --task {applies} only; got --task {task}")
    if args.mode is not None and args.method is not None:
        raise CLIError(f"give --method or --mode (its old name for inpainting: "
                       f"{', '.join(f'{k} = {v}' for k, v in _OLD_MODES.items())}), not both")
    method = _OLD_MODES[args.mode] if args.mode is not None else (args.method or "replace")
    if args.scale is not None and method != "pigdm":
        raise CLIError(f"--scale weights the guidance of --method pigdm; --method {method} "
                       "has none")
    c, h, w = shape
    settings: Dict[str, Any] = {"task": task, "method": method}
    if method == "pigdm":
        settings["scale"] = 1.0 if args.scale is None else args.scale
    if task == "inpaint":
        settings["mask"] = args.mask or "center"
    elif task == "colorize" and c != 3:
        raise CLIError(f"--task colorize needs a 3-channel (RGB) model; {ckpt!r} is a model of "
                       f"{c}-channel images {shape} (train one on colour data: sdeflow train "
                       "--data colour)")
    elif task == "superres":
        factor = 2 if args.factor is None else args.factor
        if h % factor or w % factor:
            raise CLIError(f"--factor {factor} must divide the image height and width "
                           f"({h} x {w}) of {ckpt!r}")
        settings["factor"] = factor
    return settings
