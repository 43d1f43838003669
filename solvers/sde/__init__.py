"""SDEs: the torchsde protocol adapter (terms), one step per method, SRK tableaus, and the
SDE entry points (`solve_sde`, `sdeint`)."""
