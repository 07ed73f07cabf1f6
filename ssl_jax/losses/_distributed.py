"""Batch-wide reductions shared by the losses, with one code path for every mode.

``axis_name=None``: the arrays are the whole batch (one device, or ``jax.jit`` over a
sharded ``Mesh``, where the compiler inserts the collectives). A name: we run inside
``shard_map``/``pmap`` and each device holds its slice of the batch.

Contract for the named case, relied on by ``ssl_jax.train.step``: every device returns the
GLOBAL loss value, and ``jax.grad`` on a device gives the gradient of that global loss with
respect to the device's own slice only (the step then ``psum``s parameter gradients).
Differentiating ``psum(local_terms)`` directly does not give that: ``grad`` seeds every
device's output, so each device's term would be counted once per device (a factor of n).
:func:`global_sum` returns the ``psum`` as a value but differentiates only the local term;
the terms' dependence on other devices' rows flows back through ``all_gather``, whose
transpose (``psum_scatter``) adds them up on the device that owns the row.
"""

import jax
import jax.numpy as jnp
from jax import lax


def gather_batch(x: jax.Array, axis_name: str | None) -> jax.Array:
    """All rows of the global batch, in device order (identity when ``axis_name`` is None).

    Args:
      x: local rows ``[n, ...]``.
      axis_name: mapped axis to gather over, or None.

    Returns:
      ``[n * num_devices, ...]``; device ``d``'s rows start at ``d * n``.
    """
    if axis_name is None:
        return x
    return lax.all_gather(x, axis_name, axis=0, tiled=True)


def batch_offset(n_local: int, axis_name: str | None) -> jax.Array | int:
    """Index of this device's first row in :func:`gather_batch`'s output."""
    if axis_name is None:
        return 0
    return lax.axis_index(axis_name) * n_local


def num_devices(axis_name: str | None) -> int:
    """Size of the mapped axis (1 when ``axis_name`` is None); static under tracing."""
    if axis_name is None:
        return 1
    return lax.axis_size(axis_name)


def global_sum(local: jax.Array, axis_name: str | None) -> jax.Array:
    """Sum over devices as a value; the gradient flows through this device's term only.

    Args:
      local: this device's partial sum (already divided by the GLOBAL count for a mean).
      axis_name: mapped axis, or None (then ``local`` is returned unchanged).

    Returns:
      ``psum(local)``, equal on every device (bit for bit: the added term is exactly 0).
    """
    if axis_name is None:
        return local
    # stop_gradient on the total: see the module docstring (avoids an n-fold gradient).
    total = lax.stop_gradient(lax.psum(local, axis_name))
    return total + (local - lax.stop_gradient(local))


def global_max(x: jax.Array, axis_name: str | None) -> jax.Array:
    """Maximum over all entries of the global array (a constant: no gradient)."""
    m = jnp.max(lax.stop_gradient(x))
    return m if axis_name is None else lax.pmax(m, axis_name)


def compute_dtype(*arrays: jax.Array) -> jnp.dtype:
    """Float type the losses compute in: at least float32 (bf16/f16 inputs are upcast)."""
    return jnp.result_type(jnp.float32, *arrays)
