"""A model-agnostic training loop with EMA, atomic checkpoints and bit-for-bit resume.

The loop knows nothing about score models: it minimises ``loss_fn(model, batch, rng)``
over minibatches of in-memory tensors with AdamW, gradient clipping and an EMA of the
weights. ``rng`` is a `generative.randomness.BatchRandom`: every example's noise is a
function of (seed, step, position in the batch), so it needs no saved state. The rest is
checkpointed — data order (epoch permutation and position) and the running log
accumulators — so an interrupted run resumed from its last checkpoint produces the same
parameters, bit for bit, as an uninterrupted one. Draws that cannot take a generator (dropout,
or a loss drawing from torch's global RNG) happen with the global RNG seeded by
``(seed, step, rank)`` for that step (`generative.randomness.seeded_global_rng`), so they too
are a function of ``config.seed`` and need no saved state; the caller's global RNG is left
as it was.

Files in ``out_dir``: ``checkpoint.pt`` (latest, atomically replaced), ``metrics.jsonl``
(one JSON object per logged step) and, while a run is training, ``.train.lock`` (the
`generative.checkpoint.RunLock` holding the trainer's pid: a second trainer on the same
directory fails at once with `RunLockedError`). Temporary files of checkpoint writes killed
midway are removed when a run starts.

Data-parallel training (``distributed=``, a `generative.distributed.DistContext`): every
process draws the same global batch indices and takes a contiguous slice of them, with the
`BatchRandom` rows of those examples. After ``backward`` the gradients and the step's logged
scalars are averaged over processes by one coalesced all-reduce. This is explicit rather
than ``DistributedDataParallel``: DDP synchronises only gradients of computations that run
through its wrapper's ``forward``, while losses call other methods (FFJORD's ``log_prob``)
and check the model's type. (DDP would overlap the reduction with the backward pass; for
models of this size one all-reduce after it costs little, see docs/scaling.md.) So N
processes compute the gradient of the same global-batch mean as one process, up to
floating-point summation order, take the same optimiser step, log the same values, and
rank 0 alone writes files.
"""
from __future__ import annotations

import functools
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from solvers.brownian.seeds import seed_for

from .errors import InputError, NonFiniteLossError
from .checkpoint import (CheckpointCorruptError, RunLock, check_plain, load_checkpoint,
                         remove_stale_temp_files, save_checkpoint)
from .distributed import SINGLE_PROCESS, DistContext
from .ema import EMA
from .randomness import BatchRandom, Random, seeded_global_rng

Tensor = torch.Tensor
Batch = Union[Tensor, Tuple[Tensor, ...]]
LossOutput = Union[Tensor, Tuple[Tensor, Dict[str, Tensor]]]
LossFn = Callable[[nn.Module, Batch, Random], LossOutput]
BatchTransform = Callable[[Batch, Random], Batch]

__all__ = ["TrainConfig", "TrainResult", "BatchSampler", "train", "CHECKPOINT_NAME",
           "METRICS_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
# Config fields that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = {"steps", "log_every", "ckpt_every", "progress"}


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings (saved in every checkpoint as a plain dict)."""

    steps: int = 10_000
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 0
    grad_clip: Optional[float] = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    seed: int = 0
    log_every: int = 100
    ckpt_every: int = 1000
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "ckpt_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"TrainConfig.{name} must be a positive int; got {value!r}")
        if self.lr <= 0:
            raise InputError(f"TrainConfig.lr must be > 0; got {self.lr!r}")

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def lr_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based): linear warmup, then constant."""
        if self.warmup_steps <= 0:
            return self.lr
        return self.lr * min(1.0, (step + 1) / self.warmup_steps)


class BatchSampler:
    """Epoch-wise shuffled minibatch indices from its own CPU generator (checkpointable)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < 1:
            raise InputError(f"the training data is empty (n={n})")
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.generator)
        self.pos = 0

    def next(self) -> Tensor:
        """The next ``batch_size`` indices; a new permutation starts when one runs out."""
        out = []
        need = self.batch_size
        while need > 0:
            if self.pos == self.n:
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.pos = 0
            take = self.perm[self.pos:self.pos + need]
            self.pos += len(take)
            need -= len(take)
            out.append(take)
        return torch.cat(out)

    def state_dict(self) -> Dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm.clone(),
                "pos": self.pos, "n": self.n, "batch_size": self.batch_size}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state["n"] != self.n:
            raise InputError(f"checkpoint was trained on {state['n']} examples; "
                             f"the data given has {self.n}")
        self.generator.set_state(state["generator"])
        self.perm, self.pos = state["perm"].clone(), int(state["pos"])


@dataclass
class TrainResult:
    """What `train` returns: the trained model (raw weights), its EMA, final step, last log."""

    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    step: int
    metrics: Dict[str, float]
    checkpoint: Optional[Path]


def _as_tuple(data: Batch) -> Tuple[Tensor, ...]:
    parts = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    if not parts or not all(isinstance(p, Tensor) for p in parts):
        raise TypeError("data must be a tensor or a tuple of tensors; got "
                        f"{type(data).__name__}")
    n = parts[0].shape[0]
    if any(p.shape[0] != n for p in parts):
        raise InputError("all data tensors must have the same first dimension; got "
                         f"{[tuple(p.shape) for p in parts]}")
    return parts


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after ``step`` (by a run that was interrupted)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by the crash
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            keep.append(line)
    path.write_text("".join(line + "\n" for line in keep))


def _check_resumable(saved: Dict[str, Any], config: TrainConfig) -> None:
    current = asdict(config)
    diff = {k: (saved.get(k), v) for k, v in current.items()
            if k not in _RESUMABLE_CHANGES and saved.get(k) != v}
    if diff:
        raise InputError("cannot resume: the checkpoint was trained with a different config "
                         + ", ".join(f"{k}: saved {a!r} vs given {b!r}"
                                     for k, (a, b) in diff.items()))


def _checkpoint_bytes(model: nn.Module) -> int:
    """Rough size of one checkpoint: model + EMA + two Adam moments, doubled for the
    temporary file written before the atomic rename."""
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    return 2 * 4 * n


def _check_output_dir(out: Path, needed: int) -> None:
    """Fail before training if ``out`` cannot hold checkpoints (unwritable or disk full)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".sdeflow-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise OSError(f"output directory {str(out)!r} is not writable: {err}") from err
    free = shutil.disk_usage(out).free
    if free < needed:
        raise OSError(f"output directory {str(out)!r} has {free / 2**20:.1f} MiB free but a "
                      f"checkpoint needs about {needed / 2**20:.1f} MiB")


_STATE_TYPES = {"step": int, "model": dict, "ema": dict, "optimizer": dict, "sampler": dict,
                "acc": dict, "acc_count": int, "config": dict}


def _check_state(state: Dict[str, Any], path: Path) -> None:
    """`CheckpointCorruptError` naming the key unless ``state`` has the fields of a training
    checkpoint with the right types."""
    for key, kind in _STATE_TYPES.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (
                kind is int and value < 0):
            raise CheckpointCorruptError(
                f"checkpoint {str(path)!r} cannot be resumed: state[{key!r}] must be "
                f"{'an int >= 0' if kind is int else 'a dict'}; got "
                f"{'nothing' if key not in state else repr(value)[:60]}")
    if not all(isinstance(v, Tensor) for v in state["acc"].values()):
        raise CheckpointCorruptError(f"checkpoint {str(path)!r} cannot be resumed: "
                                     "state['acc'] must map names to tensors")


def _prepare_output(out: Path, resume: bool, config: TrainConfig, needed: int,
                    locks: List[RunLock]) -> Optional[Dict[str, Any]]:
    """Check ``out``, lock it (the lock is appended to ``locks``; released by the caller),
    remove temporary files of killed writes, and return the checkpoint state to resume from,
    or ``None`` for a fresh run (whose metrics log is emptied). Run on the process that
    writes files."""
    _check_output_dir(out, needed)
    locks.append(RunLock(out).acquire())
    ckpt_path, log_path = out / CHECKPOINT_NAME, out / METRICS_NAME
    remove_stale_temp_files(ckpt_path)
    if ckpt_path.is_file() and not resume:
        raise FileExistsError(f"{str(ckpt_path)!r} exists; pass resume=True to continue "
                              "that run or choose another output directory")
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, map_location="cpu")
        _check_state(state, ckpt_path)
        _check_resumable(state["config"], config)
        _truncate_log(log_path, state["step"])
        return state
    log_path.write_text("")
    return None


def _restore(state: Dict[str, Any], path: Optional[Path], model: nn.Module, ema: EMA,
             optimizer: torch.optim.Optimizer, sampler: "BatchSampler") -> None:
    """Load a resumed checkpoint's parts, each failure a `CheckpointCorruptError` naming the
    part (e.g. weights of another model, an optimizer of other parameters)."""
    for key, target in (("model", model), ("ema", ema), ("optimizer", optimizer),
                        ("sampler", sampler)):
        try:
            target.load_state_dict(state[key])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointCorruptError(
                f"checkpoint {str(path)!r} cannot be resumed: state[{key!r}] does not fit "
                f"this run ({detail})") from err


def _average_over_ranks(ctx: DistContext, params: List[nn.Parameter], scalars: Tensor
                        ) -> Tensor:
    """Average the gradients (in place) and this step's logged scalars over the processes of
    ``ctx`` in one all-reduce (the scalars travel in the gradients' dtype); returns the
    averaged scalars. A parameter without a gradient on a process counts as a zero gradient
    there, so every process takes the same optimiser step."""
    if not ctx.parallel:
        return scalars
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    wire = grads[0].dtype if grads else scalars.dtype
    *grads, averaged = ctx.average([*grads, scalars.to(wire)])
    for p, g in zip(params, grads):
        p.grad = g
    return averaged.to(scalars.dtype)


def _non_finite(acc_count: int, step: int, kept: str) -> NonFiniteLossError:
    return NonFiniteLossError(f"non-finite loss in the {acc_count} steps before step {step}; "
                              f"{kept}. Lower the learning rate or clip gradients")


def train(model: nn.Module, loss_fn: LossFn, data: Batch, config: TrainConfig, *,
          out_dir: Union[str, Path, None] = None, resume: bool = False,
          transform: Optional[BatchTransform] = None,
          device: Union[str, torch.device, None] = None,
          meta: Optional[Dict[str, Any]] = None,
          on_log: Optional[Callable[[Dict[str, float]], None]] = None,
          distributed: Optional[DistContext] = None) -> TrainResult:
    """Train ``model`` for ``config.steps`` optimiser steps.

    Args:
        model: any module; moved to ``device`` (default: the device of its parameters, or
            the context's device with ``distributed``).
        loss_fn: ``loss_fn(model, batch, rng)`` returning a scalar loss, or
            ``(loss, extras)`` with a dict of scalar tensors to log (a value may also be a
            zero-argument callable, read after ``loss.backward()``: e.g. the backward
            pass's NFE). Draw all randomness
            per example from ``rng`` (a `generative.randomness.BatchRandom`, e.g.
            ``randomness.randn(x.shape, rng, device=x.device)``) to keep resume exact.
            The loss must be a mean over the batch's examples (so that averaging over
            processes gives the global-batch mean), with the same extras on every process.
        data: a tensor ``(N, ...)`` or a tuple of tensors with a common first dimension
            (e.g. images and labels); a batch has the same structure.
        out_dir: where checkpoints and the metrics log go (``None``: no files).
        resume: continue from ``out_dir/checkpoint.pt`` if it exists (else start fresh).
            Without ``resume``, an existing checkpoint there is an error.
        transform: ``transform(batch, rng)`` applied to every batch (e.g. dequantise).
        meta: a plain dict saved in each checkpoint (e.g. the model/SDE config a CLI needs
            to rebuild the model).
        on_log: called with each metrics record (after it is written), on rank 0 only.
        distributed: a `generative.distributed.DistContext` to train data-parallel over its
            ``world_size`` processes (see the module docstring): ``config.batch_size`` is the
            global batch and must be divisible by ``world_size``; rank 0's initial weights
            are broadcast; rank 0 alone reads and writes ``out_dir`` (the checkpoint state is
            broadcast on resume, so other nodes need no shared file system). Every process
            returns the same trained model. Default: one process.
    """
    ctx = distributed if distributed is not None else SINGLE_PROCESS
    if config.batch_size % ctx.world_size:
        raise InputError(f"TrainConfig.batch_size ({config.batch_size}) must be divisible by "
                         f"the number of processes (world size {ctx.world_size})")
    local = config.batch_size // ctx.world_size
    rows = slice(ctx.rank * local, (ctx.rank + 1) * local)  # this process's global-batch rows
    if meta is not None:
        check_plain(meta, "meta")
    params = list(model.parameters())
    if not params:
        raise InputError("model has no parameters to train")
    trainable = [p for p in params if p.requires_grad]
    if device is None:
        device = ctx.device if distributed is not None else params[0].device
    device = torch.device(device)
    model.to(device)
    ctx.broadcast_(list(model.state_dict().values()))
    parts = tuple(p.to(device) for p in _as_tuple(data))
    sampler = BatchSampler(parts[0].shape[0], config.batch_size, config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  betas=(config.beta1, config.beta2),
                                  weight_decay=config.weight_decay)
    ema = EMA(model, config.ema_decay, config.ema_warmup)
    acc = {"loss": torch.zeros((), device=device, dtype=torch.float64),
           "grad_norm": torch.zeros((), device=device, dtype=torch.float64)}
    acc_count, step = 0, 0

    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None
    log_path = out / METRICS_NAME if out is not None else None
    locks: List[RunLock] = []  # rank 0's lock on out_dir, held until train returns
    bar: Optional[tqdm] = None
    try:
        if out is not None:
            state = ctx.run_on_main(functools.partial(_prepare_output, out, resume, config,
                                                      _checkpoint_bytes(model), locks))
            if state is not None:
                _restore(state, ckpt_path, model, ema, optimizer, sampler)
                acc = {k: v.to(device) for k, v in state["acc"].items()}
                acc_count, step = state["acc_count"], state["step"]

        def write(record: Optional[Dict[str, float]], checkpoint: bool) -> None:
            """Rank 0's part of a log and/or checkpoint step."""
            if record is not None:
                if log_path is not None:
                    with open(log_path, "a") as fh:
                        fh.write(json.dumps(record) + "\n")
                if on_log is not None:
                    on_log(record)
            if checkpoint:
                save_checkpoint(ckpt_path, {
                    "step": step, "model": model.state_dict(), "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(), "sampler": sampler.state_dict(),
                    "acc": acc, "acc_count": acc_count,
                    "config": asdict(config), "meta": meta or {}})

        record: Dict[str, float] = {}
        start_time = time.perf_counter()
        bar = tqdm(total=config.steps, initial=step, disable=not (config.progress and ctx.is_main),
                   dynamic_ncols=True, leave=False)
        model.train()
        while step < config.steps:
            idx = sampler.next()[rows].to(device)
            batch: Batch = tuple(p[idx] for p in parts) if len(parts) > 1 else parts[0][idx]
            rng = BatchRandom(config.seed + 1, step, local, start=rows.start,
                              global_size=config.batch_size, device=device)
            with seeded_global_rng(seed_for(config.seed + 2, step, ctx.rank), device):
                if transform is not None:
                    batch = transform(batch, rng)
                output = loss_fn(model, batch, rng)
                loss, extras = output if isinstance(output, tuple) else (output, {})
                if loss.dim() != 0:
                    raise InputError(f"loss_fn must return a scalar loss; got shape "
                                     f"{tuple(loss.shape)}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            keys = sorted(extras)
            scalars = torch.stack([torch.as_tensor(v() if callable(v) else v).detach()
                                   .to(acc["loss"])
                                   for v in (loss, *(extras[k] for k in keys))])
            scalars = _average_over_ranks(ctx, trainable, scalars)
            clip = config.grad_clip if config.grad_clip else math.inf
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), clip)
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(step)
            optimizer.step()
            ema.update(model)
            step += 1
            acc["grad_norm"] += grad_norm.detach().double()
            for k, v in zip(("loss", *keys), scalars):
                acc[k] = acc.get(k, torch.zeros_like(acc["loss"])) + v
            acc_count += 1
            bar.update(1)

            # every process holds the same (averaged) acc, so all raise together
            log_due = step % config.log_every == 0 or step == config.steps
            ckpt_due = ckpt_path is not None and (step % config.ckpt_every == 0
                                                  or step == config.steps)
            if log_due:
                record = {"step": step, "lr": config.lr_at(step - 1),
                          "time": time.perf_counter() - start_time,
                          **{k: float(v) / acc_count for k, v in acc.items()}}
                if not math.isfinite(record["loss"]):
                    raise _non_finite(acc_count, step, "the last good checkpoint (if any) is kept")
                acc = {k: torch.zeros_like(v) for k, v in acc.items()}
                acc_count = 0
                bar.set_postfix(loss=f"{record['loss']:.4g}")
            if ckpt_due and acc_count and not bool(torch.isfinite(acc["loss"])):
                # never overwrite the last good checkpoint with a diverged model
                raise _non_finite(acc_count, step, f"the checkpoint of step {step - acc_count} "
                                  "or earlier is kept")
            if log_due or ckpt_due:
                ctx.run_on_main(functools.partial(write, record if log_due else None, ckpt_due))
        return TrainResult(model, ema, optimizer, step, record, ckpt_path)
    finally:
        if bar is not None:
            bar.close()
        for lock in locks:
            lock.release()
