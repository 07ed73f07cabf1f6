"""Alignment, uniformity, embedding std and effective rank against plain numpy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import metrics
from tests.losses.helpers import fd_grad, normal


def unit(z):
    z = np.asarray(z, np.float64)
    return z / np.linalg.norm(z, axis=-1, keepdims=True)


def np_alignment(z1, z2, alpha=2.0):
    """Wang & Isola Eq. 4: E ||f(x) - f(y)||_2^alpha over positive pairs."""
    a, b = unit(z1), unit(z2)
    return float(np.mean([np.linalg.norm(a[i] - b[i]) ** alpha for i in range(len(a))]))


def np_uniformity(z, t=2.0):
    """Wang & Isola Eq. 5: log E exp(-t ||f(x) - f(y)||^2) over distinct pairs."""
    u = unit(z)
    n = len(u)
    vals = [np.exp(-t * np.sum((u[i] - u[j]) ** 2)) for i, j in itertools.permutations(range(n), 2)]
    return float(np.log(np.sum(vals) / (n * (n - 1))))


def np_embedding_std(z):
    return float(np.mean(np.std(unit(z), axis=0)))


def np_effective_rank(z):
    """Roy & Vetterli Def. 1: exp of the entropy of the L1-normalised singular values."""
    s = np.linalg.svd(np.asarray(z, np.float64), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


@pytest.mark.parametrize("shape", [(6, 3), (9, 12)])
def test_matches_numpy_values_and_gradients(shape):
    z1, z2 = normal(sum(shape), shape, shape)
    cases = [
        (lambda a, b: metrics.alignment(a, b), np_alignment, (z1, z2)),
        (
            lambda a, b: metrics.alignment(a, b, alpha=1.0),
            lambda a, b: np_alignment(a, b, 1.0),
            (z1, z2),
        ),
        (lambda a: metrics.uniformity(a), np_uniformity, (z1,)),
        (lambda a: metrics.uniformity(a, t=0.5), lambda a: np_uniformity(a, 0.5), (z1,)),
        (metrics.embedding_std, np_embedding_std, (z1,)),
        (metrics.effective_rank, np_effective_rank, (z1,)),
    ]
    for fn, ref, args in cases:
        np.testing.assert_allclose(fn(*args), ref(*args), rtol=1e-5)
        np.testing.assert_allclose(jax.jit(fn)(*args), ref(*args), rtol=1e-5)
        grads = jax.grad(fn, tuple(range(len(args))))(*args)
        ref_grads = fd_grad(ref, args)
        for g, r in zip(grads, ref_grads, strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-5 * np.abs(r).max())


def test_vmap():
    (z,) = normal(6, (3, 7, 4))
    for fn in (metrics.uniformity, metrics.embedding_std, metrics.effective_rank):
        np.testing.assert_allclose(jax.vmap(fn)(z), [fn(z[i]) for i in range(3)], rtol=1e-5)


def test_collapse():
    (z,) = normal(1, (16, 8))
    collapsed = np.broadcast_to(z[:1], z.shape)
    np.testing.assert_allclose(metrics.embedding_std(collapsed), 0.0, atol=1e-7)
    np.testing.assert_allclose(metrics.effective_rank(collapsed), 1.0, rtol=1e-4)
    np.testing.assert_allclose(metrics.uniformity(collapsed), 0.0, atol=1e-6)
    # Dimensional collapse: every row on one line (with scale and sign) is still rank 1.
    line = np.outer(np.linspace(-2, 3, 16), z[0]).astype(np.float32)
    np.testing.assert_allclose(metrics.effective_rank(line), 1.0, rtol=1e-4)


def test_identical_views_align_perfectly():
    (z,) = normal(2, (8, 5))
    assert float(metrics.alignment(z, z)) < 1e-12
    assert float(metrics.alignment(z, 2.0 * z)) < 1e-12
    assert np.all(np.isfinite(jax.grad(metrics.alignment)(z, z)))
    np.testing.assert_allclose(metrics.alignment(z, -z), 4.0, rtol=1e-6)


def test_uniformity_prefers_spread_points():
    (base,) = normal(3, (64, 8))
    spread = base
    clustered = np.ones((64, 8), np.float32) + 0.1 * base
    assert float(metrics.uniformity(spread)) < float(metrics.uniformity(clustered)) - 1.0
    # Antipodal points on orthogonal axes: squared distances 2 (orthogonal) and 4 (opposite).
    cross = np.concatenate([np.eye(4), -np.eye(4)]).astype(np.float32)
    np.testing.assert_allclose(metrics.uniformity(cross), np_uniformity(cross), rtol=1e-6)


def test_healthy_scales():
    d = 16
    (z,) = normal(4, (4096, d))
    std = float(metrics.embedding_std(z))
    assert abs(std - 1 / np.sqrt(d)) < 0.05 / np.sqrt(d)
    np.testing.assert_allclose(metrics.effective_rank(np.eye(d, dtype=np.float32)), d, rtol=1e-5)
    rank = float(metrics.effective_rank(z))
    assert d - 0.5 < rank <= d
    half = z * (np.arange(d) < d // 2)
    np.testing.assert_allclose(metrics.effective_rank(half), rank / 2, rtol=0.05)


def test_dtypes_and_errors():
    (z,) = normal(5, (6, 4))
    assert metrics.uniformity(z.astype(jnp.bfloat16)).dtype == jnp.float32
    with pytest.raises(ValueError, match="same shape"):
        metrics.alignment(z, z[:5])
    with pytest.raises(ValueError, match="alpha"):
        metrics.alignment(z, z, alpha=0.0)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.uniformity(z[:1])
    with pytest.raises(ValueError, match="t must be"):
        metrics.uniformity(z, t=-1.0)
    with pytest.raises(ValueError, match="rank 2"):
        metrics.embedding_std(z[0])
    with pytest.raises(ValueError, match="at least 2"):
        metrics.effective_rank(z[:1])
