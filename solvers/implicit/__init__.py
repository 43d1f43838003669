"""Implicit ODE methods for stiff problems: (E)SDIRK, Radau IIA / Gauss–Legendre collocation
and Rosenbrock methods as `engine.solver.Solver` strategies, with a batched simplified Newton
(per-row convergence), dense per-row Jacobians and implicit-function-theorem gradients."""
