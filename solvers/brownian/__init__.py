"""Brownian motion: counter-based seeds, the virtual Brownian tree and the fixed-grid
bulk sampler."""
