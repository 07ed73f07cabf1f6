"""PyTorch peers of the benchmarked ssl_jax steps: same networks, losses and optimiser.

Benchmark-only code: ssl_jax never imports torch. Each peer mirrors what one call of
``ssl_jax.train.step`` computes for its method (forward of every view, loss, backward,
LARS, BatchNorm statistics, EMA target, online linear probe, collapse monitors), in
channels-first or channels-last memory format.
"""
