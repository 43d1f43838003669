"""Generative models on top of `dynamics` and `solvers`."""
