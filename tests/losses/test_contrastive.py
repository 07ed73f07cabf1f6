"""NT-Xent, MoCo v2 InfoNCE, MoCo v3, the MoCo queue and the NNCLR lookup against plain numpy.

References are written from the papers' equations, in float64, one anchor at a time;
gradients are central finite differences of those references.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import (
    info_nce_loss,
    moco_v3_loss,
    nearest_neighbour,
    nt_xent_loss,
    queue_update,
)
from tests.losses.helpers import fd_grad

RTOL, ATOL = 2e-5, 2e-6


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_nt_xent(z1, z2, temperature):
    """SimCLR Eq. 1: l(i,j) = -log exp(s_ij/t) / sum_{k != i} exp(s_ik/t), mean over 2N."""
    z = unit(np.concatenate([z1, z2]).astype(np.float64))
    two_n = len(z)
    total = 0.0
    for i in range(two_n):
        j = (i + two_n // 2) % two_n
        s = z @ z[i] / temperature
        denom = sum(np.exp(s[k]) for k in range(two_n) if k != i)
        total += -np.log(np.exp(s[j]) / denom)
    return total / two_n


def np_info_nce(q, k, queue, temperature):
    """MoCo Eq. 1: -log exp(q.k+/t) / (exp(q.k+/t) + sum_j exp(q.k_j/t)), batch mean."""
    q, k, queue = unit(q), unit(k), unit(queue)
    losses = []
    for i in range(len(q)):
        pos = np.exp(q[i] @ k[i] / temperature)
        neg = np.exp(queue @ q[i] / temperature).sum()
        losses.append(-np.log(pos / (pos + neg)))
    return np.mean(losses)


def np_moco_v3(q1, q2, k1, k2, temperature):
    """MoCo v3 Alg. 1: ctr(q, k) = CE(q k^T / t, arange(N)) * 2t; ctr(q1,k2) + ctr(q2,k1)."""

    def ctr(q, k):
        q, k = unit(q), unit(k)
        losses = []
        for i in range(len(q)):
            s = k @ q[i] / temperature
            losses.append(-(s[i] - np.log(np.exp(s).sum())))
        return np.mean(losses) * 2 * temperature

    return ctr(q1, k2) + ctr(q2, k1)


def rand(key, *shapes):
    keys = jax.random.split(jax.random.key(key), len(shapes))
    return [
        np.asarray(jax.random.normal(k, s), np.float32) for k, s in zip(keys, shapes, strict=True)
    ]


def check_value_and_grads(jax_fn, np_fn, args):
    value, grads = jax.value_and_grad(jax_fn, argnums=tuple(range(len(args))))(*args)
    np.testing.assert_allclose(value, np_fn(*args), rtol=RTOL, atol=ATOL)
    for g, g_ref in zip(grads, fd_grad(np_fn, args), strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=2e-5)
    jit_value = jax.jit(jax_fn)(*args)
    np.testing.assert_allclose(jit_value, value, rtol=1e-6, atol=1e-7)


# -- NT-Xent -----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "d", "temperature"), [(4, 3, 0.1), (7, 5, 0.5)])
def test_nt_xent_matches_numpy(n, d, temperature):
    z1, z2 = rand(n * d, (n, d), (n, d))
    check_value_and_grads(
        lambda a, b: nt_xent_loss(a, b, temperature=temperature),
        lambda a, b: np_nt_xent(a, b, temperature),
        [z1, z2],
    )


def test_nt_xent_properties():
    z1, z2 = rand(0, (8, 6), (8, 6))
    np.testing.assert_allclose(nt_xent_loss(z1, z2), nt_xent_loss(z2, z1), rtol=1e-6)
    # Scale invariance (embeddings are normalised inside).
    np.testing.assert_allclose(nt_xent_loss(3.0 * z1, z2), nt_xent_loss(z1, z2), rtol=1e-5)
    aligned = nt_xent_loss(z1, 2.0 * z1)
    assert aligned < nt_xent_loss(z1, z2)
    # A cross entropy over 2N-1 > 1 classes is never 0.
    assert aligned > 0
    assert nt_xent_loss(z1, z2).dtype == jnp.float32
    assert nt_xent_loss(z1.astype(jnp.bfloat16), z2.astype(jnp.bfloat16)).dtype == jnp.float32


def test_nt_xent_vmap():
    z1, z2 = rand(1, (3, 5, 4), (3, 5, 4))
    batched = jax.vmap(lambda a, b: nt_xent_loss(a, b, temperature=0.3))(z1, z2)
    expected = [np_nt_xent(a, b, 0.3) for a, b in zip(z1, z2, strict=True)]
    np.testing.assert_allclose(batched, expected, rtol=RTOL)


def test_nt_xent_errors():
    z = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="z1 must have rank 2"):
        nt_xent_loss(jnp.ones((4,)), jnp.ones((4,)))
    with pytest.raises(ValueError, match="same shape"):
        nt_xent_loss(z, jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="global batch of at least 2"):
        nt_xent_loss(z[:1], z[:1])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        nt_xent_loss(z, z, temperature=0.0)


# -- MoCo v2 InfoNCE ---------------------------------------------------------------------


@pytest.mark.parametrize(("b", "d", "k", "temperature"), [(4, 3, 5, 0.2), (6, 8, 11, 0.07)])
def test_info_nce_matches_numpy(b, d, k, temperature):
    q, key, queue = rand(b + k, (b, d), (b, d), (k, d))
    check_value_and_grads(
        lambda *a: info_nce_loss(*a, temperature=temperature),
        lambda *a: np_info_nce(*a, temperature),
        [q, key, queue],
    )


def test_info_nce_properties():
    q, k, queue = rand(2, (6, 4), (6, 4), (9, 4))
    assert info_nce_loss(q, 5.0 * q, queue) < info_nce_loss(q, k, queue)
    # A query whose key is one of the negatives: logits tie, loss >= log 2 for that query.
    tied = info_nce_loss(q[:1], q[:1], jnp.concatenate([q[:1], -q[:1]]), temperature=1.0)
    np.testing.assert_allclose(tied, np.log(np.exp(1) * 2 + np.exp(-1)) - 1, rtol=1e-6)


def test_info_nce_errors():
    q = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="same shape"):
        info_nce_loss(q, jnp.ones((4, 2)), jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="feature size of query"):
        info_nce_loss(q, q, jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="negatives must have rank 2"):
        info_nce_loss(q, q, jnp.ones((5,)))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        info_nce_loss(q, q, q, temperature=-1.0)


# -- MoCo v3 -----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "d", "temperature"), [(4, 3, 0.2), (5, 6, 1.0)])
def test_moco_v3_matches_numpy(n, d, temperature):
    args = rand(n * d + 1, (n, d), (n, d), (n, d), (n, d))
    check_value_and_grads(
        lambda *a: moco_v3_loss(*a, temperature=temperature),
        lambda *a: np_moco_v3(*a, temperature),
        args,
    )


def test_moco_v3_properties():
    q1, q2, k1, k2 = rand(3, (6, 4), (6, 4), (6, 4), (6, 4))
    # Symmetric under swapping the two views.
    np.testing.assert_allclose(moco_v3_loss(q1, q2, k1, k2), moco_v3_loss(q2, q1, k2, k1))
    assert moco_v3_loss(q1, q2, q2, q1) < moco_v3_loss(q1, q2, k1, k2)


def test_moco_v3_errors():
    x = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="q1 and k2 must have the same shape"):
        moco_v3_loss(x, x, x, jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="q1 must have rank 2"):
        moco_v3_loss(x[0], x[0], x[0], x[0])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        moco_v3_loss(x, x, x, x, temperature=0)


# -- queue -------------------------------------------------------------------------------


def np_queue_update(queue, ptr, keys):
    queue = queue.copy()
    for i, key in enumerate(keys):
        queue[(ptr + i) % len(queue)] = key
    return queue, (ptr + len(keys)) % len(queue)


@pytest.mark.parametrize(("size", "batch"), [(10, 4), (8, 4), (5, 5), (7, 3)])
def test_queue_update_matches_numpy(size, batch):
    update = jax.jit(queue_update)
    queue = np.zeros((size, 2), np.float32)
    ref_queue, ref_ptr = queue.copy(), 0
    ptr = jnp.zeros((), jnp.int32)
    seen = []
    for step in range(5):
        keys = np.arange(batch * 2, dtype=np.float32).reshape(batch, 2) + 100 * step
        seen.extend(keys)
        queue, ptr = update(queue, ptr, keys)
        ref_queue, ref_ptr = np_queue_update(ref_queue, ref_ptr, keys)
        np.testing.assert_array_equal(queue, ref_queue)
        assert int(ptr) == ref_ptr and ptr.dtype == jnp.int32
    # FIFO: the queue holds exactly the last `size` keys enqueued.
    last = np.stack(seen[-size:])
    assert sorted(map(tuple, np.asarray(queue))) == sorted(map(tuple, last))


def test_queue_update_eager_int_ptr_and_no_gradient():
    queue = jnp.zeros((6, 3))
    keys = jnp.ones((4, 3), jnp.bfloat16)
    new, ptr = queue_update(queue, 4, keys)
    assert int(ptr) == 2 and new.dtype == queue.dtype
    np.testing.assert_array_equal(np.asarray(new)[[4, 5, 0, 1]], 1.0)
    np.testing.assert_array_equal(np.asarray(new)[[2, 3]], 0.0)
    grad = jax.grad(lambda k: jnp.sum(queue_update(queue, 0, k)[0]))(jnp.ones((4, 3)))
    np.testing.assert_array_equal(grad, 0.0)


def test_queue_update_errors():
    queue = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match="cannot hold a batch of 5"):
        queue_update(queue, 0, jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="feature size of queue"):
        queue_update(queue, 0, jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="ptr must have rank 0"):
        queue_update(queue, jnp.zeros((1,), jnp.int32), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="ptr must be an integer"):
        queue_update(queue, 0.0, jnp.ones((2, 3)))


# -- NNCLR support-set lookup ------------------------------------------------------------


def np_nearest_neighbour(queue, z):
    sims = unit(z.astype(np.float64)) @ unit(queue.astype(np.float64)).T
    return queue[np.argmax(sims, axis=1)]


@pytest.mark.parametrize(("k", "b", "d"), [(7, 3, 4), (20, 9, 6)])
def test_nearest_neighbour_matches_numpy(k, b, d):
    queue, z = rand(k + b, (k, d), (b, d))
    out = nearest_neighbour(queue, z)
    np.testing.assert_array_equal(out, np_nearest_neighbour(queue, z))
    np.testing.assert_array_equal(jax.jit(nearest_neighbour)(queue, z), out)


def test_nearest_neighbour_cosine_not_euclidean_and_no_gradient():
    queue = jnp.array([[10.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    # Query (1, 0.1): Euclidean nearest is row 1, cosine nearest is row 0 (the long one).
    z = jnp.array([[1.0, 0.1], [0.0, 5.0]])
    np.testing.assert_array_equal(nearest_neighbour(queue, z), queue[jnp.array([0, 2])])
    gq, gz = jax.grad(lambda q, x: jnp.sum(nearest_neighbour(q, x)), argnums=(0, 1))(queue, z)
    np.testing.assert_array_equal(gq, 0.0)
    np.testing.assert_array_equal(gz, 0.0)


def test_nearest_neighbour_errors():
    with pytest.raises(ValueError, match="feature size of queue"):
        nearest_neighbour(jnp.ones((5, 3)), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="z must have rank 2"):
        nearest_neighbour(jnp.ones((5, 3)), jnp.ones((3,)))
    with pytest.raises(ValueError, match="queue needs a batch of at least 1"):
        nearest_neighbour(jnp.ones((0, 3)), jnp.ones((2, 3)))
