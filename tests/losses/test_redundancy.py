"""Barlow Twins and VICReg against plain numpy, and on 8 (fake CPU) devices.

The numpy references are written from the papers / official code in float64, entry by
entry; gradients are central finite differences of those references.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import barlow_twins_loss, vicreg_loss
from tests.losses.helpers import MODES, check_distributed, fd_grad, normal, split

# ---------------------------------------------------------------- numpy references


def np_barlow(z1, z2, lam, eps=1e-5):
    """Zbontar et al. Eq. 1-2 with BatchNorm (biased variance) over the batch."""
    z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
    n, d = z1.shape

    def bn(z):
        out = np.empty_like(z)
        for j in range(d):
            mu = sum(z[:, j]) / n
            var = sum((z[b, j] - mu) ** 2 for b in range(n)) / n
            out[:, j] = (z[:, j] - mu) / np.sqrt(var + eps)
        return out

    a, b = bn(z1), bn(z2)
    c = np.array(
        [[sum(a[k, i] * b[k, j] for k in range(n)) / n for j in range(d)] for i in range(d)]
    )
    on = sum((1 - c[i, i]) ** 2 for i in range(d))
    off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    return on + lam * off, on, off


def np_vicreg(z1, z2, sim=25.0, std=25.0, cov=1.0, gamma=1.0, eps=1e-4):
    """VICReg as ``main_vicreg.py``: mse, halved hinge on sqrt(unbiased var + eps), cov/(n-1)."""
    x, y = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
    n, d = x.shape
    inv = sum((x[i, j] - y[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def terms(z):
        zc = z - z.mean(axis=0)
        c = np.zeros((d, d))
        for i in range(n):
            c += np.outer(zc[i], zc[i])
        c /= n - 1
        s = np.sqrt(np.array([c[j, j] for j in range(d)]) + eps)
        hinge = np.mean([max(0.0, gamma - s_j) for s_j in s])
        off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return hinge, off

    hx, cx = terms(x)
    hy, cy = terms(y)
    var = hx / 2 + hy / 2
    covariance = cx + cy
    return sim * inv + std * var + cov * covariance, inv, var, covariance


# ---------------------------------------------------------------- Barlow Twins


@pytest.mark.parametrize(("n", "d"), [(8, 5), (6, 12)])
@pytest.mark.parametrize("lam", [5e-3, 0.5])
def test_barlow_matches_numpy(n, d, lam):
    z1, z2 = normal(n * d, (n, d), (n, d))
    z2 = z2 + z1  # correlated views, as in training
    loss, terms = barlow_twins_loss(z1, z2, lambda_=lam)
    ref, on, off = np_barlow(z1, z2, lam)
    np.testing.assert_allclose(loss, ref, rtol=2e-5)
    np.testing.assert_allclose(terms["on_diag"], on, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(terms["off_diag"], off, rtol=2e-5)
    grads = jax.grad(lambda a, b: barlow_twins_loss(a, b, lambda_=lam)[0], (0, 1))(z1, z2)
    ref_grads = fd_grad(lambda a, b: np_barlow(a, b, lam)[0], (z1, z2))
    for g, r in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-4 * np.abs(r).max())


def test_barlow_properties_and_jit():
    (z,) = normal(1, (16, 4))
    # Identical views of a whitened batch: C = I, so both terms vanish.
    white = (z - z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z.T, bias=True)).T)
    loss, terms = jax.jit(functools.partial(barlow_twins_loss, eps=1e-12))(white, white)
    assert float(terms["on_diag"]) < 1e-8 and float(terms["off_diag"]) < 1e-8
    assert float(loss) < 1e-8
    # Invariant to a per-dimension affine map of either view (BatchNorm inside).
    scaled = 3.0 * z + np.arange(4, dtype=np.float32)
    (z2,) = normal(2, (16, 4))
    a = barlow_twins_loss(z, z2)[0]
    b = barlow_twins_loss(scaled, z2)[0]
    np.testing.assert_allclose(a, b, rtol=1e-5)
    # bfloat16 inputs are computed in float32.
    lo, _ = barlow_twins_loss(z.astype(jnp.bfloat16), z2.astype(jnp.bfloat16))
    assert lo.dtype == jnp.float32


def test_barlow_errors():
    (z,) = normal(3, (8, 4))
    with pytest.raises(ValueError, match="same shape"):
        barlow_twins_loss(z, z[:, :3])
    with pytest.raises(ValueError, match="rank 2"):
        barlow_twins_loss(z[0], z[0])
    with pytest.raises(ValueError, match="at least 2"):
        barlow_twins_loss(z[:1], z[:1])
    with pytest.raises(ValueError, match="lambda_"):
        barlow_twins_loss(z, z, lambda_=-1.0)


def test_barlow_large_dim_memory_is_one_matrix():
    """D=8192: the forward needs one D x D float32 matrix of scratch, forward+backward two
    (the cross-correlation and its cotangent); no mask or off-diagonal copy."""
    d = 8192
    spec = jax.ShapeDtypeStruct((4, d), jnp.float32)
    matrix = d * d * 4
    loss = lambda a, b: barlow_twins_loss(a, b)[0]
    for fn, budget in ((loss, 1.25), (jax.value_and_grad(loss, (0, 1)), 2.25)):
        stats = jax.jit(fn).lower(spec, spec).compile().memory_analysis()
        assert stats.temp_size_in_bytes < budget * matrix, stats.temp_size_in_bytes / matrix


# ---------------------------------------------------------------- VICReg


def vicreg_inputs(seed, n, d):
    """Per-dimension scales well away from the hinge (std 1) so finite differences are clean."""
    z1, z2 = normal(seed, (n, d), (n, d))
    scales = np.where(np.arange(d) % 2 == 0, 0.4, 2.5).astype(np.float32)
    return z1 * scales, (0.5 * z1 + z2) * scales


@pytest.mark.parametrize(("n", "d"), [(8, 5), (6, 10)])
def test_vicreg_matches_numpy(n, d):
    z1, z2 = vicreg_inputs(n + d, n, d)
    loss, terms = vicreg_loss(z1, z2)
    ref, inv, var, cov = np_vicreg(z1, z2)
    np.testing.assert_allclose(loss, ref, rtol=2e-5)
    np.testing.assert_allclose(terms["invariance"], inv, rtol=2e-5)
    np.testing.assert_allclose(terms["variance"], var, rtol=2e-5)
    np.testing.assert_allclose(terms["covariance"], cov, rtol=2e-5)
    grads = jax.grad(lambda a, b: vicreg_loss(a, b)[0], (0, 1))(z1, z2)
    ref_grads = fd_grad(lambda a, b: np_vicreg(a, b)[0], (z1, z2))
    for g, r in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-4 * np.abs(r).max())


def test_vicreg_coefficients_and_jit():
    z1, z2 = vicreg_inputs(4, 8, 6)
    kw = dict(sim_coeff=2.0, std_coeff=3.0, cov_coeff=0.5, gamma=2.0, eps=1e-3)
    loss, terms = jax.jit(functools.partial(vicreg_loss, **kw))(z1, z2)
    ref = np_vicreg(z1, z2, sim=2.0, std=3.0, cov=0.5, gamma=2.0, eps=1e-3)
    np.testing.assert_allclose(loss, ref[0], rtol=2e-5)
    np.testing.assert_allclose(
        loss, 2.0 * terms["invariance"] + 3.0 * terms["variance"] + 0.5 * terms["covariance"]
    )


def test_vicreg_collapse_is_penalised():
    (z,) = normal(5, (8, 4))
    collapsed = np.broadcast_to(z[:1], z.shape)
    _, terms = vicreg_loss(collapsed, collapsed)
    assert float(terms["invariance"]) == 0.0
    # Zero variance: the hinge is gamma - sqrt(eps) per dimension, for both branches.
    np.testing.assert_allclose(terms["variance"], 1.0 - np.sqrt(1e-4), rtol=1e-6)
    np.testing.assert_allclose(terms["covariance"], 0.0, atol=1e-10)


def test_vicreg_errors():
    (z,) = normal(6, (8, 4))
    with pytest.raises(ValueError, match="same shape"):
        vicreg_loss(z, z[:4])
    with pytest.raises(ValueError, match="at least 2"):
        vicreg_loss(z[:1], z[:1])
    with pytest.raises(ValueError, match="gamma"):
        vicreg_loss(z, z, gamma=0.0)
    with pytest.raises(ValueError, match="std_coeff"):
        vicreg_loss(z, z, std_coeff=-1.0)


def test_vmap_over_heads():
    """Several projection heads at once (vmap over a leading axis) equal separate calls."""
    z1, z2 = normal(11, (3, 8, 4), (3, 8, 4))
    for loss in (barlow_twins_loss, vicreg_loss):
        batched, terms = jax.vmap(loss)(z1, z2)
        assert batched.shape == (3,) and all(t.shape == (3,) for t in terms.values())
        for h in range(3):
            np.testing.assert_allclose(batched[h], loss(z1[h], z2[h])[0], rtol=1e-6)


# ---------------------------------------------------------------- distribution contract


@pytest.mark.parametrize("mode", MODES)
def test_barlow_distributed(mesh, mode):
    z1, z2 = normal(7, (16, 6), (16, 6))
    loss = lambda a, b, axis_name: barlow_twins_loss(a, b + a, lambda_=0.1, axis_name=axis_name)
    check_distributed(loss, (z1, z2), mesh, mode)


def test_barlow_one_row_per_device(mesh):
    """Per-device statistics would be undefined here; only global ones work."""
    z1, z2 = normal(8, (8, 3), (8, 3))
    loss = lambda a, b, axis_name: barlow_twins_loss(a, b, axis_name=axis_name)
    check_distributed(loss, (z1, z2), mesh, "shard_map")


@pytest.mark.parametrize("mode", MODES)
def test_vicreg_distributed(mesh, mode):
    z1, z2 = vicreg_inputs(9, 16, 6)
    loss = lambda a, b, axis_name: vicreg_loss(a, b, axis_name=axis_name)
    check_distributed(loss, (z1, z2), mesh, mode)


def test_local_statistics_would_differ(mesh):
    """Guard: pmap without an axis name (per-device BatchNorm) gives another loss."""
    z1, z2 = normal(10, (16, 6), (16, 6))
    local = jax.pmap(lambda a, b: barlow_twins_loss(a, b)[0])(split(z1, 8), split(z2, 8))
    assert np.abs(np.asarray(local) - float(barlow_twins_loss(z1, z2)[0])).max() > 1e-2
