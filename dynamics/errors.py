"""The error root of `dynamics`: every error the layer raises on purpose is a `DynamicsError`.

An argument that is not valid raises `InputError`, which is also `solvers.InvalidInputError`
(what the layer raised before, so ``except InvalidInputError`` keeps catching it) and hence a
``ValueError``; its message names the argument, what was expected and what was received.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from solvers.errors import InvalidInputError

__all__ = ["DynamicsError", "InputError", "as_input_error"]


class DynamicsError(Exception):
    """Root of the errors `dynamics` raises on purpose."""


class InputError(DynamicsError, InvalidInputError):
    """An argument that is not valid: its message names it, what was expected and what was
    received."""


@contextlib.contextmanager
def as_input_error() -> Iterator[None]:
    """Re-raise a `solvers` input check's `InvalidInputError` in the block as this layer's
    `InputError` (same message), so the solvers' checks serve `dynamics` too."""
    try:
        yield
    except InputError:
        raise
    except InvalidInputError as err:
        raise InputError(str(err)) from None
