"""The error root of `generative`: every error the layer raises on purpose is a
`GenerativeError`.

Mistakes in what a user supplied (a model description, an option, a config file) are also
``ValueError`` s, so ``except ValueError`` keeps catching them; checkpoint I/O failures are
also ``RuntimeError`` s (`generative.checkpoint`), and `generative.cli_checks.CLIError` is what
the command line prints as ``sdeflow: error: ...``.
"""

__all__ = ["GenerativeError", "ModelError"]


class GenerativeError(Exception):
    """Root of the errors `generative` raises on purpose."""


class ModelError(GenerativeError, ValueError):
    """A model description, option or checkpoint the user supplied is not valid."""
