"""Performance benchmarks of ssl_jax against PyTorch peers (``python experiments/bench/run.py``)."""
