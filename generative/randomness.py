"""Per-example randomness of a training step, independent of how the batch is sharded.

A training step's noise (diffusion times, Gaussian noise, dequantisation, Hutchinson probes)
is a function of ``(seed, step, draw number, position in the global batch)`` only. Every
draw is made for the whole global batch of ``G`` examples from a generator seeded by
``(seed, step, draw number)``, and each process keeps the rows of its own examples. So a
run on N processes sees exactly the numbers a single-process run with the same global batch
sees, and resuming from a checkpoint at step ``s`` needs no generator state.

`randn` / `rand` / `rademacher` accept either a `BatchRandom` or a plain
``torch.Generator`` (or ``None``), so the loss functions work both inside and outside
`generative.train`.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch

from solvers import sample_probes
from solvers.brownian.seeds import seed_for

from .errors import InputError

Tensor = torch.Tensor

__all__ = ["BatchRandom", "Random", "randn", "rand", "rademacher", "draw_probes",
           "example_positions", "seeded_global_rng"]


class BatchRandom:
    """The randomness of one training step for this process's rows of the global batch.

    Args:
        seed: the run's seed.
        step: the optimiser step (0-based).
        batch_size: this process's number of examples ``b``.
        start: position of this process's first example in the global batch.
        global_size: the global batch size ``G`` (default ``b``: one process).
        device: where draws are made (default: the ``device`` given to each draw).

    Each draw ``randn((b, *event))`` makes a ``(G, *event)`` tensor from a fresh generator
    seeded by ``(seed, step, k)`` (``k`` counts this step's draws) and returns rows
    ``start : start + b``. A draw whose first dimension is not ``b`` is an error.
    """

    def __init__(self, seed: int, step: int, batch_size: int, *, start: int = 0,
                 global_size: Optional[int] = None, device=None) -> None:
        global_size = batch_size if global_size is None else int(global_size)
        if not (batch_size >= 1 and 0 <= start and start + batch_size <= global_size):
            raise InputError(f"BatchRandom: rows [{start}, {start + batch_size}) must lie in "
                             f"the global batch [0, {global_size})")
        self.seed, self.step = int(seed), int(step)
        self.batch_size, self.start, self.global_size = int(batch_size), int(start), global_size
        self.device = device
        self.draws = 0

    def generator(self, device=None) -> torch.Generator:
        """The next draw's generator (advances the draw counter)."""
        g = torch.Generator(device=device if device is not None else "cpu")
        g.manual_seed(seed_for(self.seed, self.step, self.draws))
        self.draws += 1
        return g

    def _draw(self, kind: str, shape: Sequence[int], dtype, device) -> Tensor:
        shape = tuple(int(s) for s in shape)
        if not shape or shape[0] != self.batch_size:
            raise InputError(f"BatchRandom draws are per example: the first dimension must be "
                             f"the batch size {self.batch_size}; got shape {shape}")
        device = torch.device(device if device is not None else (self.device or "cpu"))
        g = self.generator(device)
        full = (self.global_size, *shape[1:])
        if kind == "randn":
            out = torch.randn(full, generator=g, dtype=dtype, device=device)
        else:
            out = torch.rand(full, generator=g, dtype=dtype, device=device)
        return out[self.start:self.start + self.batch_size]

    def randn(self, shape: Sequence[int], *, dtype=None, device=None) -> Tensor:
        return self._draw("randn", shape, dtype, device)

    def rand(self, shape: Sequence[int], *, dtype=None, device=None) -> Tensor:
        return self._draw("rand", shape, dtype, device)

    def __repr__(self) -> str:
        return (f"BatchRandom(seed={self.seed}, step={self.step}, rows=[{self.start}, "
                f"{self.start + self.batch_size}) of {self.global_size})")


Random = Union[BatchRandom, torch.Generator, None]


def randn(shape: Sequence[int], generator: Random = None, *, dtype=None, device=None) -> Tensor:
    """Standard normal draws from a `BatchRandom` or a ``torch.Generator`` (or the global RNG)."""
    if isinstance(generator, BatchRandom):
        return generator.randn(shape, dtype=dtype, device=device)
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)


def rand(shape: Sequence[int], generator: Random = None, *, dtype=None, device=None) -> Tensor:
    """U[0, 1) draws from a `BatchRandom` or a ``torch.Generator`` (or the global RNG)."""
    if isinstance(generator, BatchRandom):
        return generator.rand(shape, dtype=dtype, device=device)
    return torch.rand(tuple(shape), generator=generator, dtype=dtype, device=device)


def rademacher(shape: Sequence[int], generator: Random = None, *, dtype=None,
               device=None) -> Tensor:
    """±1 entries with equal probability."""
    u = rand(shape, generator, dtype=dtype, device=device)
    return torch.where(u < 0.5, -torch.ones_like(u), torch.ones_like(u))


def draw_probes(x: Tensor, n_probes: int, probe: str, generator: Random) -> Tensor:
    """Hutchinson probes ``(n_probes, *x.shape)`` (``'rademacher'`` or ``'gaussian'``), drawn
    per example from a `BatchRandom`, else by `solvers.sample_probes`."""
    if not isinstance(generator, BatchRandom):
        return sample_probes(x, n_probes, probe, generator=generator)
    shape = (x.shape[0], n_probes, *x.shape[1:])
    draw = randn if probe == "gaussian" else rademacher
    return draw(shape, generator, dtype=x.dtype, device=x.device).movedim(1, 0)


def example_positions(batch: int, generator: Random, *, like: Tensor) -> Tuple[Tensor, int]:
    """``(positions, G)``: each example's position in the global batch (float, ``(batch,)``)
    and the global batch size ``G`` (``batch`` for a plain generator)."""
    if isinstance(generator, BatchRandom):
        start, total = generator.start, generator.global_size
    else:
        start, total = 0, batch
    pos = torch.arange(start, start + batch, dtype=like.dtype, device=like.device)
    return pos, total


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: Union[str, torch.device, None] = None) -> Iterator[None]:
    """Run the block with torch's global CPU generator (and ``device``'s, when CUDA) seeded
    by ``seed``, restoring the caller's generator states afterwards. Draws that cannot take
    a generator (``nn.Dropout``) are then a function of ``seed``."""
    device = torch.device(device if device is not None else "cpu")
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[cuda[0]].manual_seed(seed)
        yield
