"""Helpers shared by the loss tests: finite differences and the three distributed modes.

``check_distributed`` runs a loss under ``jit`` over a sharded Mesh, ``shard_map`` and ``pmap``
and checks every device returns the single-device value and its slice of the gradient.
"""

import functools

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def fd_grad(f, args, h=1e-6):
    """Central finite differences of scalar ``f(*args)`` w.r.t. every entry of every arg."""
    args = [np.asarray(a, np.float64) for a in args]
    grads = []
    for i, a in enumerate(args):
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            up = [x.copy() for x in args]
            down = [x.copy() for x in args]
            up[i][idx] += h
            down[i][idx] -= h
            g[idx] = (f(*up) - f(*down)) / (2 * h)
        grads.append(g)
    return grads


def normal(seed, *shapes, scale=1.0):
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.normal(size=s) * scale, np.float32) for s in shapes]


def _value_and_grads(loss, args, axis_name):
    """``loss(*args, axis_name=...) -> (scalar, aux)``; grads w.r.t. every positional arg."""
    fn = functools.partial(loss, axis_name=axis_name)
    return jax.value_and_grad(fn, argnums=tuple(range(len(args))), has_aux=True)(*args)


def split(x, n):
    return x.reshape(n, -1, *x.shape[1:])


def run_distributed(loss, args, mesh, mode):
    """Runs ``loss`` in one of the three modes; returns per-device values, aux and grads.

    Values and aux get a leading device axis (length 1 for ``jit``); grads come back in the
    global row layout.
    """
    n = mesh.devices.size
    if mode == "jit":
        sharded = jax.device_put(args, NamedSharding(mesh, P(AXIS)))
        (value, aux), grads = jax.jit(lambda *a: _value_and_grads(loss, a, None))(*sharded)
        return value[None], jax.tree.map(lambda x: x[None], aux), grads
    if mode == "shard_map":

        def body(*a):
            (value, aux), grads = _value_and_grads(loss, a, AXIS)
            return value[None], jax.tree.map(lambda x: x[None], aux), grads

        specs = tuple(P(AXIS) for _ in args)
        fn = jax.shard_map(body, mesh=mesh, in_specs=specs, out_specs=(P(AXIS), P(AXIS), specs))
        return jax.jit(fn)(*args)
    if mode == "pmap":
        fn = jax.pmap(lambda *a: _value_and_grads(loss, a, AXIS), axis_name=AXIS)
        (values, aux), grads = fn(*[split(a, n) for a in args])
        return values, aux, jax.tree.map(lambda g: g.reshape(-1, *g.shape[2:]), grads)
    raise ValueError(mode)


MODES = ("jit", "shard_map", "pmap")


def check_distributed(loss, args, mesh, mode, *, rtol=1e-5, atol=1e-6, zero_grads=()):
    """Every device returns the single-device value/aux; grads equal the single-device rows."""
    (value, aux), grads = _value_and_grads(loss, args, None)
    values, mode_aux, mode_grads = run_distributed(loss, args, mesh, mode)
    values = np.asarray(values)
    np.testing.assert_array_equal(values, values[0])  # bit-identical across devices
    np.testing.assert_allclose(values[0], value, rtol=rtol, atol=atol)
    for key in aux:
        got = np.asarray(mode_aux[key])
        np.testing.assert_array_equal(got, got[0])
        np.testing.assert_allclose(got[0], aux[key], rtol=rtol, atol=atol)
    for i, (g, ref) in enumerate(zip(mode_grads, grads, strict=True)):
        if i in zero_grads:
            np.testing.assert_array_equal(ref, 0.0)
        else:
            assert np.abs(ref).max() > 1e-4, "reference gradient is trivially zero"
        # No factor of n (psum transpose pitfall): compare against the plain gradient.
        np.testing.assert_allclose(g, ref, rtol=rtol, atol=atol)
