"""The error root of `generative`: every error the layer raises on purpose is a
`GenerativeError`.

Mistakes in what a user supplied are also ``ValueError`` s, so ``except ValueError`` keeps
catching them: `InputError` for an argument (also `solvers.InvalidInputError`, which the layer
raised before), `ModelError` for a model description, option or checkpoint,
`generative.run_config.ConfigError` for a config file. Checkpoint I/O failures
(`generative.checkpoint.CheckpointError`) are also ``RuntimeError`` s, a non-finite training
loss (`NonFiniteLossError`) is also a ``FloatingPointError``, and
`generative.cli_checks.CLIError` is what the command line prints as ``sdeflow: error: ...``.
"""
from solvers.errors import InvalidInputError

__all__ = ["GenerativeError", "InputError", "ModelError", "NonFiniteLossError"]


class GenerativeError(Exception):
    """Root of the errors `generative` raises on purpose."""


class InputError(GenerativeError, InvalidInputError):
    """An argument that is not valid: its message names it, what was expected and what was
    received."""


class ModelError(GenerativeError, ValueError):
    """A model description, option or checkpoint the user supplied is not valid."""


class NonFiniteLossError(GenerativeError, FloatingPointError):
    """The training loss became NaN or infinite."""
