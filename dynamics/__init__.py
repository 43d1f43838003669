"""Continuous-time processes for generative modelling: forward SDEs, reverse SDEs, probability flows."""
