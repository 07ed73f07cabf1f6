"""BYOL and SimSiam losses against plain numpy, their stop-gradients, and on 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import byol_loss, byol_symmetric_loss, simsiam_loss, simsiam_symmetric_loss
from tests.losses.helpers import MODES, check_distributed, fd_grad, normal


def np_byol(p, z):
    """Grill et al. Eq. 2: || p/||p|| - z/||z|| ||_2^2, batch mean."""
    p, z = np.asarray(p, np.float64), np.asarray(z, np.float64)
    rows = [
        np.sum((p[i] / np.linalg.norm(p[i]) - z[i] / np.linalg.norm(z[i])) ** 2)
        for i in range(len(p))
    ]
    return float(np.mean(rows))


def np_simsiam(p, z):
    """Chen & He Eq. 1: -p/||p|| . z/||z||, batch mean."""
    p, z = np.asarray(p, np.float64), np.asarray(z, np.float64)
    rows = [-(p[i] @ z[i]) / (np.linalg.norm(p[i]) * np.linalg.norm(z[i])) for i in range(len(p))]
    return float(np.mean(rows))


@pytest.mark.parametrize(("loss", "ref"), [(byol_loss, np_byol), (simsiam_loss, np_simsiam)])
@pytest.mark.parametrize("shape", [(4, 3), (7, 16)])
def test_matches_numpy_and_stops_target_gradient(loss, ref, shape):
    p, z = normal(sum(shape), shape, shape)
    np.testing.assert_allclose(loss(p, z), ref(p, z), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jit(loss)(p, z), ref(p, z), rtol=1e-5, atol=1e-6)
    gp, gz = jax.grad(loss, (0, 1))(p, z)
    (ref_gp,) = fd_grad(lambda a: ref(a, z), (p,))
    np.testing.assert_allclose(gp, ref_gp, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(gz, 0.0)  # z is the target: stop-gradient inside


@pytest.mark.parametrize(
    ("loss", "single", "weight"),
    [(byol_symmetric_loss, np_byol, 1.0), (simsiam_symmetric_loss, np_simsiam, 0.5)],
)
def test_symmetric_pairs_each_prediction_with_the_other_view(loss, single, weight):
    p1, p2, z1, z2 = normal(3, *[(5, 4)] * 4)
    expected = weight * (single(p1, z2) + single(p2, z1))
    np.testing.assert_allclose(loss(p1, p2, z1, z2), expected, rtol=1e-5, atol=1e-6)
    grads = jax.grad(loss, (0, 1, 2, 3))(p1, p2, z1, z2)
    ref = fd_grad(lambda a, b: weight * (single(a, z2) + single(b, z1)), (p1, p2))
    np.testing.assert_allclose(grads[0], ref[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[1], ref[1], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(grads[2], 0.0)
    np.testing.assert_array_equal(grads[3], 0.0)


def test_identical_views_and_scale_invariance():
    (z,) = normal(4, (6, 8))
    np.testing.assert_allclose(byol_loss(z, z), 0.0, atol=1e-6)
    np.testing.assert_allclose(simsiam_loss(z, z), -1.0, rtol=1e-6)
    np.testing.assert_allclose(byol_loss(z, -z), 4.0, rtol=1e-6)
    np.testing.assert_allclose(byol_symmetric_loss(z, z, z, z), 0.0, atol=1e-6)
    (p,) = normal(5, (6, 8))
    np.testing.assert_allclose(byol_loss(3.0 * p, 0.5 * z), byol_loss(p, z), rtol=1e-5)
    # BYOL's loss is 2 + 2 * SimSiam's (both are functions of the cosine).
    np.testing.assert_allclose(byol_loss(p, z), 2.0 + 2.0 * simsiam_loss(p, z), rtol=1e-5)


def test_vmap_over_heads():
    p, z = normal(9, (3, 5, 4), (3, 5, 4))
    for loss in (byol_loss, simsiam_loss):
        batched = jax.vmap(loss)(p, z)
        np.testing.assert_allclose(batched, [loss(p[h], z[h]) for h in range(3)], rtol=1e-6)


def test_zero_vectors_stay_finite_and_bf16_upcasts():
    z = jnp.zeros((3, 4))
    assert np.isfinite(float(byol_loss(z, z)))
    assert np.all(np.isfinite(jax.grad(simsiam_loss)(z, z)))
    (p,) = normal(6, (3, 4))
    out = byol_loss(p.astype(jnp.bfloat16), p.astype(jnp.bfloat16))
    assert out.dtype == jnp.float32


def test_errors():
    (p,) = normal(7, (4, 3))
    with pytest.raises(ValueError, match="same shape"):
        byol_loss(p, p[:, :2])
    with pytest.raises(ValueError, match="rank 2"):
        simsiam_loss(p[0], p[0])
    with pytest.raises(ValueError, match="p1 and p2"):
        byol_symmetric_loss(p, p[:3], p[:3], p)
    with pytest.raises(ValueError, match="at least 1"):
        simsiam_loss(p[:0], p[:0])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("loss", [byol_symmetric_loss, simsiam_symmetric_loss])
def test_distributed(mesh, mode, loss):
    args = tuple(normal(8, *[(16, 4)] * 4))
    wrapped = lambda *a, axis_name: (loss(*a, axis_name=axis_name), {})
    check_distributed(wrapped, args, mesh, mode, zero_grads=(2, 3))
