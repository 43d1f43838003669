"""ODE methods as data (Butcher tableaus), the generic explicit RK step, dense output, and
the ODE entry points (`solve_ode`, `odeint`, `odeint_adjoint`)."""
