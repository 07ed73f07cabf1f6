"""ssl_jax: self-supervised visual representation learning in JAX/Flax.

Public modules: ``ssl_jax.losses``, ``ssl_jax.metrics``, ``ssl_jax.augment``,
``ssl_jax.models``, ``ssl_jax.methods``, ``ssl_jax.train``, ``ssl_jax.eval``, ``ssl_jax.data``.
Submodules are imported lazily by the user; this file imports nothing heavy.
"""

__version__ = "0.1.0"
