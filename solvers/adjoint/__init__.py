"""Gradient modes that do not backpropagate through the steps: the ODE continuous adjoint
(backsolve) and the stochastic adjoint for SDEs."""
