"""The error root of `dynamics`: every error the layer raises on purpose is a `DynamicsError`.

An argument that is not valid raises `InputError`, which is also `solvers.InvalidInputError`
(what the layer raised before, so ``except InvalidInputError`` keeps catching it) and hence a
``ValueError``; its message names the argument, what was expected and what was received.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Type

from solvers.errors import InvalidInputError

__all__ = ["DynamicsError", "InputError", "as_input_error"]


class DynamicsError(Exception):
    """Root of the errors `dynamics` raises on purpose."""


class InputError(DynamicsError, InvalidInputError):
    """An argument that is not valid: its message names it, what was expected and what was
    received."""


@contextlib.contextmanager
def as_input_error(error: Type[InvalidInputError] = InputError) -> Iterator[None]:
    """Re-raise a lower layer's `InvalidInputError` in the block as ``error`` (default this
    layer's `InputError`; `generative` passes its own), same message, so one layer's checks
    serve the layers above with their own error root."""
    try:
        yield
    except error:
        raise
    except InvalidInputError as err:
        raise error(str(err)) from None
