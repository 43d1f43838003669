"""Multi-process context (torchrun) and the few collectives training, sampling and metrics use.

`init_distributed` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and joins the default process group — NCCL when CUDA is
available (one GPU per process, ``cuda:LOCAL_RANK``), gloo on the CPU — when more than one
process runs (or when asked). `SINGLE_PROCESS` is the trivial context: for it every
collective below is the identity and costs nothing, so library code takes a context
argument and runs unchanged on one process.

Rank 0 is the only process that touches files; `DistContext.run_on_main` runs a function
there and hands its result — or its exception — to every rank, so a failure on rank 0 (disk
full, bad checkpoint) stops all ranks instead of leaving them waiting in a collective.
"""
from __future__ import annotations

import functools
import os
import pickle
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from .errors import InputError
from .metrics.frechet import ArrayLike, FeatureMoments

Tensor = torch.Tensor
T = TypeVar("T")

__all__ = ["DistContext", "SINGLE_PROCESS", "init_distributed", "torchrun_env_present",
           "gather_feature_stats"]

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly one-process) job.

    Attributes:
        rank: global rank (0 is the main process, the only one that writes files).
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        device: this process's device (``cuda:local_rank`` or the CPU).
        joined: whether this process joined a ``torch.distributed`` process group.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    joined: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        """More than one process: the collectives communicate."""
        return self.world_size > 1

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()

    def shard(self, n: int) -> range:
        """This rank's contiguous share of ``range(n)``: shares differ by at most one item,
        the lower ranks take the extra ones, and the shares in rank order tile ``range(n)``."""
        if n < 0:
            raise InputError(f"n must be >= 0; got {n}")
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (self.rank < extra))

    def average(self, tensors: Sequence[Tensor]) -> List[Tensor]:
        """The element-wise mean over ranks of each tensor, by one all-reduce of a flat buffer
        (dtype: the widest of the inputs', at least float32; results in the inputs' dtypes)."""
        tensors = list(tensors)
        if not self.parallel or not tensors:
            return tensors
        dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors), torch.float32)
        flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world_size
        return [part.view_as(t).to(t.dtype)
                for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]

    def broadcast_(self, tensors: Sequence[Tensor]) -> None:
        """Overwrite each tensor (in place) with rank 0's."""
        if self.parallel:
            for t in tensors:
                dist.broadcast(t, src=0)

    def run_on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on rank 0 only; every rank returns its result (pickled across) or
        raises its exception. Also a barrier: no rank returns before rank 0 has finished."""
        if not self.parallel:
            return fn()
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as err:  # handed to the other ranks, then re-raised here
                error = err
        box: List[Any] = [(result, _portable(error))]
        dist.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        result, shared = box[0]
        if shared is not None:
            if hasattr(shared, "add_note"):  # Python >= 3.11
                shared.add_note(f"(raised on rank 0; this is rank {self.rank})")
            raise shared
        return result

    def gather_object(self, obj: Any) -> Optional[List[Any]]:
        """Every rank's (picklable) ``obj`` in rank order on rank 0; ``None`` on the others."""
        if not self.parallel:
            return [obj]
        out: Optional[List[Any]] = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def gather_rows(self, x: Tensor) -> Optional[Tensor]:
        """Every rank's rows of ``x`` (``(n_r, ...)``, ``n_r`` may be 0) concatenated in rank
        order on rank 0, on ``x``'s device; ``None`` on the others. Goes through host memory."""
        if not self.parallel:
            return x
        parts = self.gather_object(x.detach().cpu())
        return torch.cat(parts).to(x.device) if parts is not None else None

    def close(self) -> None:
        """Leave the process group (if this context joined one) once every rank is here:
        a rank that tears down its connections while a peer still uses them can abort it."""
        if self.joined and dist.is_initialized():
            try:
                self.barrier()
            except RuntimeError:  # a peer already failed: do not mask the error being raised
                pass
            dist.destroy_process_group()


SINGLE_PROCESS = DistContext()


def _portable(error: Optional[Exception]) -> Optional[Exception]:
    """``error`` if it survives pickling, else a `RuntimeError` carrying its text."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def torchrun_env_present() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(*, force: bool = False, backend: Optional[str] = None) -> DistContext:
    """This process's context from torchrun's environment variables.

    Joins the default process group when ``WORLD_SIZE`` > 1, or whenever ``force`` is set
    (a one-process torchrun job); otherwise returns a one-process context on
    ``cuda:LOCAL_RANK`` or the CPU. ``backend`` defaults to ``'nccl'`` with CUDA, else
    ``'gloo'``. Raises `RuntimeError` naming the missing variables when not under torchrun.
    """
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if not (force or torchrun_env_present()):
        return DistContext(device=device)
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise RuntimeError(f"distributed mode needs torchrun's environment variables "
                           f"({', '.join(missing)} not set); launch with `torchrun "
                           f"--nproc_per_node N -m generative.cli train ...`")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        store, rank, world_size = next(dist.rendezvous("env://"))
        # torchrun keeps one key-value store across elastic restarts: without a per-attempt
        # prefix a restarted group reads the dead workers' addresses and dials them
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"),
                                store=dist.PrefixStore(f"sdeflow/attempt_{attempt}/", store),
                                rank=rank, world_size=world_size)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device, True)


def gather_feature_stats(features: ArrayLike, ctx: DistContext = SINGLE_PROCESS
                         ) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Mean and covariance of the union of every rank's ``(n_r, F)`` features, on rank 0
    (``None`` elsewhere): each rank sends its count, mean and centred scatter matrix, which
    merge exactly (`FeatureMoments`), so the result is the single-process statistics of all
    features up to float64 round-off."""
    parts = ctx.gather_object(FeatureMoments.of(features))
    if parts is None:
        return None
    return functools.reduce(FeatureMoments.merge, parts).stats()
