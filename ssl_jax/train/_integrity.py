"""Checksums of a training state's raw bits, for verifying checkpoints on restore.

Orbax/TensorStore can return garbled bytes without error when a data file is damaged, so
:mod:`ssl_jax.train.checkpoint` stores, per leaf, shape, dtype and two checksums of the raw
bits and compares them after reading. The sums are computed on device, in integer arithmetic
(uint32 wrap-around), so they do not depend on how the arrays are sharded.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

PyTree = Any


def words(x: jax.Array) -> jax.Array:
    """The raw bits of ``x`` as uint32 words (one per element, two for 64-bit types)."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        x = jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}.get(x.dtype.itemsize)
    if unsigned is None:
        return x.astype(jnp.uint32)
    return lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def leaf_stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(finite, [sum of words, sum of words * (2 i + 1)]) with uint32 wrap-around.

    Odd weights are invertible mod 2**32, so changing any single word changes both sums;
    the weights also catch swapped words. Integer sums do not depend on the sharding.
    """
    finite = jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.array(True)
    w = words(x)
    index = jnp.zeros(w.shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(w.ndim)):
        index = index + lax.broadcasted_iota(jnp.uint32, w.shape, axis) * jnp.uint32(stride)
        stride = (stride * w.shape[axis]) % 2**32
    sums = jnp.stack([jnp.sum(w, dtype=jnp.uint32), jnp.sum(w * (2 * index + 1), dtype=jnp.uint32)])
    return finite, sums


@jax.jit
def tree_stats(tree: PyTree) -> tuple[jax.Array, jax.Array]:
    stats = [leaf_stats(jnp.asarray(x)) for x in jax.tree.leaves(tree)]
    if not stats:
        return jnp.zeros((0,), bool), jnp.zeros((0, 2), jnp.uint32)
    return jnp.stack([f for f, _ in stats]), jnp.stack([s for _, s in stats])


def host_value(x: jax.Array) -> np.ndarray:
    # Outputs are replicated scalars/vectors: any local copy is the whole value.
    return np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)


def leaf_records(state: PyTree) -> tuple[dict[str, dict], list[str]]:
    """Per-leaf shape/dtype/checksums, and the paths of leaves holding NaN/Inf."""
    paths_leaves = jax.tree_util.tree_leaves_with_path(state)
    finite, sums = (host_value(a) for a in tree_stats(state))
    records, bad = {}, []
    for (kp, leaf), ok, (s1, s2) in zip(paths_leaves, finite, sums, strict=True):
        path = jax.tree_util.keystr(kp)
        records[path] = {
            "shape": list(np.shape(leaf)),
            "dtype": dtype_name(leaf),
            "checksum": [int(s1), int(s2)],
        }
        if not ok:
            bad.append(path)
    return records, bad


def dtype_name(x: Any) -> str:
    return str(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)


def layout(tree: PyTree) -> dict[str, tuple[tuple[int, ...], str]]:
    return {
        jax.tree_util.keystr(kp): (tuple(np.shape(x)), dtype_name(x))
        for kp, x in jax.tree_util.tree_leaves_with_path(tree)
    }


def abstract_like(tree: PyTree) -> PyTree:
    """Restore targets: live ``jax.Array`` leaves become shape structs with their sharding."""

    def leaf(x):
        if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        return x

    return jax.tree.map(leaf, tree)
