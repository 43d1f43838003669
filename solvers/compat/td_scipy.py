"""torchdiffeq's ``method='scipy_solver'``: `scipy.integrate.solve_ivp` on the flat state.

Options: ``solver`` (a `solve_ivp` method name, default ``'LSODA'`` as torchdiffeq),
``min_step``, ``max_step``; ``norm`` is ignored (scipy uses its own). f is called without
autograd on NumPy copies, so the result carries no gradient; `odeint_adjoint` adds the
gradient of the same problem solved by the solvers' adjoint (see `torchdiffeq`).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from ..errors import InvalidInputError, SolverError

Tensor = torch.Tensor

__all__ = ["scipy_solve", "SCIPY_OPTIONS"]

SCIPY_OPTIONS = ("solver", "min_step", "max_step", "norm", "grid_points", "eps")


def scipy_solve(func: Callable, y0: Tensor, t: Tensor, rtol: float, atol: float,
                options: Optional[Dict[str, Any]]) -> Tensor:
    """States at ``t`` (``(len(t), *y0.shape)``) from `solve_ivp` with ``t_eval=t``."""
    from scipy.integrate import solve_ivp

    opts = dict(options or {})
    unused = {k: v for k, v in opts.items() if k not in SCIPY_OPTIONS}
    if unused:
        warnings.warn(f"ScipyWrapperODESolver: Unexpected arguments {unused}")
    if t.numel() == 1:
        return y0.detach().unsqueeze(0).clone()
    shape, dtype, device = y0.shape, y0.dtype, y0.device

    def np_func(s: float, y: np.ndarray) -> np.ndarray:
        ts = torch.tensor(s, dtype=dtype, device=device)
        ys = torch.as_tensor(y, device=device).to(dtype).reshape(shape)
        with torch.no_grad():
            return func(ts, ys).detach().cpu().numpy().reshape(-1)
    tt = t.detach().cpu().double().numpy()
    extra = {k: float(opts[k]) for k in ("min_step", "max_step") if k in opts}
    try:
        sol = solve_ivp(np_func, (tt[0], tt[-1]), y0.detach().cpu().numpy().reshape(-1),
                        t_eval=tt, method=opts.get("solver", "LSODA"), rtol=rtol, atol=atol,
                        **extra)
    except ValueError as err:
        raise InvalidInputError(f"scipy_solver: {err}") from None
    if sol.status < 0 or sol.y.shape[1] != tt.shape[0]:
        raise SolverError(f"scipy_solver ({opts.get('solver', 'LSODA')}) failed: {sol.message}")
    return torch.as_tensor(sol.y.T.copy(), device=device).to(dtype).reshape(-1, *shape)
