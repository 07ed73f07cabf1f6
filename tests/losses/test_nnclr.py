"""NNCLR's loss against plain numpy written from the paper, and on 8 devices.

The reference follows Dwibedi et al. 2021, Eq. 2 with the prediction head and the symmetric
loss: ``L_i = -log exp(NN(z_i).p_i^+ / t) / sum_k exp(NN(z_i).p_k^+ / t)`` with every vector
L2-normalised, averaged over i, and the two directions averaged. float64, one anchor at a
time; gradients are central finite differences of the reference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import nearest_neighbour, nnclr_loss
from tests.losses.helpers import MODES, check_distributed, fd_grad, normal


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_nnclr(nn1, nn2, p1, p2, temperature):
    def direction(nn, p):
        nn, p = unit(nn), unit(p)
        losses = []
        for i in range(len(nn)):
            s = p @ nn[i] / temperature
            losses.append(-(s[i] - np.log(np.sum(np.exp(s)))))
        return np.mean(losses)

    return (direction(nn1, p2) + direction(nn2, p1)) / 2


@pytest.mark.parametrize(("n", "d", "temperature"), [(3, 2, 0.1), (6, 5, 0.2), (8, 4, 1.0)])
def test_nnclr_loss_matches_numpy_values_and_gradients(n, d, temperature):
    args = normal(n * d, *[(n, d)] * 4)
    fn = lambda *a: nnclr_loss(*a, temperature=temperature)
    value, grads = jax.value_and_grad(fn, argnums=(0, 1, 2, 3))(*args)
    ref = lambda *a: np_nnclr(*a, temperature)
    np.testing.assert_allclose(value, ref(*args), rtol=2e-5, atol=2e-6)
    for g, g_ref in zip(grads, fd_grad(ref, args), strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(jax.jit(fn)(*args), value, rtol=1e-6, atol=1e-7)


def test_nnclr_loss_vmap_and_scale_invariance():
    args = normal(1, *[(3, 5, 4)] * 4)
    batched = jax.vmap(lambda *a: nnclr_loss(*a, temperature=0.1))(*args)
    for i in range(3):
        want = np_nnclr(*(a[i] for a in args), 0.1)
        np.testing.assert_allclose(batched[i], want, rtol=2e-5, atol=2e-6)
    # Rows are normalised inside: rescaling any row changes nothing.
    nn1, nn2, p1, p2 = (a[0] for a in args)
    scaled = nnclr_loss(nn1 * 3.0, nn2, p1, p2 * np.arange(1, 6)[:, None], temperature=0.1)
    np.testing.assert_allclose(scaled, batched[0], rtol=1e-5)


def test_nnclr_loss_with_the_support_set_lookup():
    """With the queue lookup in front, only the predictions get gradients (NN is state)."""
    queue, z1, z2, p1, p2 = normal(2, (12, 4), (5, 4), (5, 4), (5, 4), (5, 4))

    def fn(queue, z1, z2, p1, p2):
        nn1, nn2 = nearest_neighbour(queue, z1), nearest_neighbour(queue, z2)
        return nnclr_loss(nn1, nn2, p1, p2, temperature=0.1)

    grads = jax.grad(fn, argnums=(0, 1, 2, 3, 4))(queue, z1, z2, p1, p2)
    for g in grads[:3]:
        np.testing.assert_array_equal(g, 0.0)
    assert all(np.abs(g).max() > 1e-3 for g in grads[3:])
    sim = unit(z1) @ unit(queue).T
    want = np_nnclr(queue[sim.argmax(1)], queue[(unit(z2) @ unit(queue).T).argmax(1)], p1, p2, 0.1)
    np.testing.assert_allclose(fn(queue, z1, z2, p1, p2), want, rtol=2e-5)


@pytest.mark.parametrize("mode", MODES)
def test_nnclr_loss_distributed(mesh, mode):
    args = tuple(normal(3, *[(16, 4)] * 4))

    def loss(*a, axis_name):
        return nnclr_loss(*a, temperature=0.2, axis_name=axis_name), {}

    check_distributed(loss, args, mesh, mode)


def test_nnclr_loss_errors():
    x = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="p2"):
        nnclr_loss(x, x, x, jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="nn1"):
        nnclr_loss(jnp.ones((4,)), x, x, x)
    with pytest.raises(ValueError, match="temperature"):
        nnclr_loss(x, x, x, x, temperature=0.0)
