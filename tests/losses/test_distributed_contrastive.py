"""The batch-wide losses on 8 (fake CPU) devices give the single-device values and gradients.

Three modes, each compared with the plain single-device call on the global batch (whose
numbers the other test files check against numpy):
  jit:       ``axis_name=None`` under ``jax.jit`` with inputs sharded over a ``Mesh``;
  shard_map: ``axis_name='data'``, each device holding its rows;
  pmap:      the same per-device code under ``jax.pmap`` (the train step's second path).
In the mapped modes every device must return the GLOBAL value and ``jax.grad`` on a device
must equal the single-device gradient's rows for that device (no factor of 8).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax.losses import (
    dino_center_update,
    dino_loss,
    info_nce_loss,
    moco_v3_loss,
    nt_xent_loss,
    queue_update,
    sinkhorn_knopp,
    swav_loss,
)
from tests.losses.helpers import AXIS


def split_devices(tree, n):
    return jax.tree.map(lambda x: x.reshape(n, -1, *x.shape[1:]), tree)


def merge_devices(tree):
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), tree)


def value_and_grads(loss, args, axis_name):
    argnums = tuple(range(len(args)))
    return jax.value_and_grad(functools.partial(loss, axis_name=axis_name), argnums)(*args)


def run_jit_sharded(loss, args, mesh):
    args = jax.device_put(args, NamedSharding(mesh, P(AXIS)))
    value, grads = jax.jit(lambda *a: value_and_grads(loss, a, None))(*args)
    return value[None], grads


def run_shard_map(loss, args, mesh):
    def body(*a):
        value, grads = value_and_grads(loss, a, AXIS)
        return value[None], grads

    specs = tuple(P(AXIS) for _ in args)
    fn = jax.shard_map(body, mesh=mesh, in_specs=specs, out_specs=(P(AXIS), specs))
    return jax.jit(fn)(*args)


def run_pmap(loss, args, mesh):
    n = mesh.devices.size
    fn = jax.pmap(lambda *a: value_and_grads(loss, a, AXIS), axis_name=AXIS)
    values, grads = fn(*split_devices(args, n))
    return values, merge_devices(grads)


MODES = {"jit": run_jit_sharded, "shard_map": run_shard_map, "pmap": run_pmap}


def check_matches_single_device(loss, args, mesh, *, mode, zero_grads=()):
    value, grads = value_and_grads(loss, args, None)
    assert np.isfinite(value)
    values, mode_grads = MODES[mode](loss, args, mesh)
    values = np.asarray(values)
    # Bit-identical on every device, and equal to the global single-device value.
    np.testing.assert_array_equal(values, values[0])
    np.testing.assert_allclose(values[0], value, rtol=2e-6, atol=1e-7)
    for i, (g, g_ref) in enumerate(zip(mode_grads, grads, strict=True)):
        for leaf, leaf_ref in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref), strict=True):
            if i in zero_grads:
                np.testing.assert_array_equal(leaf_ref, 0.0)
            else:
                assert np.abs(leaf_ref).max() > 1e-4, "reference gradient is trivially zero"
            np.testing.assert_allclose(leaf, leaf_ref, rtol=1e-5, atol=1e-7)


def normal(key, *shapes):
    keys = jax.random.split(jax.random.key(key), len(shapes))
    return [jax.random.normal(k, s) for k, s in zip(keys, shapes, strict=True)]


@pytest.mark.parametrize("mode", list(MODES))
def test_nt_xent(mesh, mode):
    z1, z2 = normal(0, (16, 4), (16, 4))
    loss = lambda a, b, axis_name: nt_xent_loss(a, b, temperature=0.5, axis_name=axis_name)
    check_matches_single_device(loss, (z1, z2), mesh, mode=mode)


def test_nt_xent_one_row_per_device(mesh):
    z1, z2 = normal(1, (8, 3), (8, 3))
    loss = lambda a, b, axis_name: nt_xent_loss(a, b, axis_name=axis_name)
    check_matches_single_device(loss, (z1, z2), mesh, mode="shard_map")


@pytest.mark.parametrize("mode", list(MODES))
def test_info_nce(mesh, mode):
    q, k, queue = normal(2, (16, 4), (16, 4), (5, 4))
    loss = lambda a, b, axis_name: info_nce_loss(a, b, queue, axis_name=axis_name)
    check_matches_single_device(loss, (q, k), mesh, mode=mode)


def test_info_nce_queue_gradient_sums_over_devices(mesh):
    """A replicated input (the queue): per-device gradients add up to the global one."""
    q, k, queue = normal(3, (16, 4), (16, 4), (5, 4))
    grad_fn = lambda axis_name: jax.grad(
        lambda neg, a, b: info_nce_loss(a, b, neg, temperature=0.2, axis_name=axis_name)
    )
    expected = grad_fn(None)(queue, q, k)
    per_device = jax.pmap(grad_fn(AXIS), axis_name=AXIS, in_axes=(None, 0, 0))(
        queue, *split_devices((q, k), 8)
    )
    np.testing.assert_allclose(per_device.sum(axis=0), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", list(MODES))
def test_moco_v3(mesh, mode):
    args = tuple(normal(4, *[(16, 4)] * 4))
    loss = lambda *a, axis_name: moco_v3_loss(*a, axis_name=axis_name)
    check_matches_single_device(loss, args, mesh, mode=mode)


@pytest.mark.parametrize("mode", list(MODES))
def test_swav(mesh, mode):
    scores = [jnp.tanh(s) for s in normal(5, *[(16, 6)] * 3)]
    loss = lambda s, axis_name: swav_loss(s, num_high_res=2, axis_name=axis_name)
    check_matches_single_device(loss, (scores,), mesh, mode=mode)


@pytest.mark.parametrize("mode", ["shard_map", "pmap"])
def test_swav_with_per_device_queues(mesh, mode):
    """Each device's queue rows join the global Sinkhorn problem (rows are unordered there)."""
    scores = [jnp.tanh(s) for s in normal(6, *[(16, 6)] * 3)]
    queues = [jnp.tanh(s) for s in normal(7, *[(24, 6)] * 2)]
    loss = lambda s, qs, axis_name: swav_loss(s, queue_scores=qs, axis_name=axis_name)
    check_matches_single_device(loss, (scores, queues), mesh, mode=mode, zero_grads=(1,))


@pytest.mark.parametrize("mode", list(MODES))
def test_sinkhorn_codes(mesh, mode):
    (scores,) = normal(8, (16, 5))
    scores = jnp.tanh(scores)
    expected = sinkhorn_knopp(scores)
    if mode == "jit":
        sharded = jax.device_put(scores, NamedSharding(mesh, P(AXIS)))
        codes = jax.jit(sinkhorn_knopp)(sharded)
    elif mode == "shard_map":
        fn = functools.partial(sinkhorn_knopp, axis_name=AXIS)
        codes = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=P(AXIS), out_specs=P(AXIS)))(scores)
    else:
        fn = jax.pmap(functools.partial(sinkhorn_knopp, axis_name=AXIS), axis_name=AXIS)
        codes = merge_devices(fn(split_devices(scores, 8)))
    np.testing.assert_allclose(codes, expected, rtol=1e-5, atol=1e-7)


def test_sinkhorn_per_device_marginals_would_differ(mesh):
    """Guard: without the psum'ed marginals each device would balance only its own rows."""
    scores = jnp.tanh(normal(8, (16, 5))[0])
    local = merge_devices(jax.pmap(sinkhorn_knopp)(split_devices(scores, 8)))
    assert np.abs(np.asarray(local) - np.asarray(sinkhorn_knopp(scores))).max() > 1e-2


@pytest.mark.parametrize("mode", list(MODES))
def test_dino(mesh, mode):
    student = normal(9, *[(16, 5)] * 4)
    teacher = normal(10, *[(16, 5)] * 2)
    center = jnp.linspace(-0.5, 0.5, 5)

    def loss(s, t, axis_name):
        return dino_loss(s, t, center, teacher_temp=0.07, axis_name=axis_name)

    check_matches_single_device(loss, (student, teacher), mesh, mode=mode, zero_grads=(1,))


@pytest.mark.parametrize("mode", list(MODES))
def test_dino_center_update(mesh, mode):
    teacher = normal(11, (16, 5), (16, 5))
    center = jnp.linspace(-0.5, 0.5, 5)
    expected = dino_center_update(center, teacher)
    fn = functools.partial(dino_center_update, center, axis_name=AXIS)
    if mode == "jit":
        sharded = jax.device_put(teacher, NamedSharding(mesh, P(AXIS)))
        out = jax.jit(dino_center_update)(center, sharded)
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    elif mode == "shard_map":
        out = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=P(AXIS), out_specs=P()))(teacher)
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    else:
        out = jax.pmap(fn, axis_name=AXIS)(split_devices(teacher, 8))
        np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), rtol=1e-6)


@pytest.mark.parametrize("mode", ["shard_map", "pmap"])
def test_queue_update_keeps_device_queues_identical(mesh, mode):
    (keys,) = normal(12, (16, 3))
    queue = jnp.zeros((20, 3))
    expected_queue, expected_ptr = queue_update(queue, 10, keys)

    def fn(k):
        new, ptr = queue_update(queue, 10, k, axis_name=AXIS)
        return new[None], ptr[None]

    if mode == "shard_map":
        specs = (P(AXIS), P(AXIS))
        out, ptr = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=P(AXIS), out_specs=specs))(keys)
    else:
        out, ptr = merge_devices(jax.pmap(fn, axis_name=AXIS)(split_devices(keys, 8)))
    assert out.shape == (8, 20, 3)
    np.testing.assert_array_equal(out, np.broadcast_to(expected_queue, out.shape))
    np.testing.assert_array_equal(ptr, int(expected_ptr))
    assert int(expected_ptr) == 6


def test_naive_psum_would_scale_gradients(mesh):
    """Guard on the pitfall the losses avoid: differentiating a psum'ed loss under pmap."""
    z1, z2 = normal(13, (16, 4), (16, 4))

    def naive(a, b):
        ga = jax.lax.all_gather(a, AXIS, tiled=True)
        gb = jax.lax.all_gather(b, AXIS, tiled=True)
        return nt_xent_loss(ga, gb)

    grads = jax.pmap(jax.grad(naive), axis_name=AXIS)(*split_devices((z1, z2), 8))
    expected = jax.grad(nt_xent_loss)(z1, z2)
    np.testing.assert_allclose(merge_devices(grads), 8 * expected, rtol=1e-5, atol=1e-7)
