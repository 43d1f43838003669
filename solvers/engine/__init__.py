"""The integration engine shared by every ODE entry point: validated problems, the
fixed-grid and adaptive loops, step-size control, outputs, compaction and the solution."""
