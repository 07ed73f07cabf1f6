"""Pieces of ``experiments/cifar10_benchmark.py``: per-method settings, the wall-time budget,
the baselines (random init, supervised, raw pixels) and the report."""
