"""Runnable benchmark suites (speed vs peers, memory, NFE vs quality). See README."""
