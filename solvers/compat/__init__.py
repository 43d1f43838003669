"""Drop-in compatibility layers over the `solvers` API.

`solvers.compat.torchdiffeq` is torchdiffeq's public API (``odeint``, ``odeint_adjoint``,
``odeint_event``, ``odeint_dense``) with its argument names, options and semantics, so
``import solvers.compat.torchdiffeq as torchdiffeq`` is the whole migration. Differences
that remain are listed in docs/torchdiffeq_compat.md.
"""
