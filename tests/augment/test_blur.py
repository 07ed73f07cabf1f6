"""Gaussian blur against a direct numpy 2-D convolution and scipy.ndimage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from ssl_jax import augment as A


def _img(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _blur_ref(image: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """Direct (non-separable) 2-D Gaussian convolution with torchvision's reflect padding."""
    t = np.arange(-radius, radius + 1)
    k2 = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma**2))
    k2 /= k2.sum()
    padded = np.pad(
        image.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), mode="reflect"
    )
    H, W = image.shape[:2]
    out = np.zeros(image.shape)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out += k2[dy, dx] * padded[dy : dy + H, dx : dx + W]
    return out


@pytest.mark.parametrize(
    ("shape", "sigma", "radius"),
    [
        ((8, 9, 3), 0.7, 2),
        ((32, 32, 3), 1.5, None),
        ((23, 17, 1), 2.0, 5),
        ((64, 48, 3), 0.1, None),
    ],
)
def test_blur_matches_numpy_and_scipy(shape, sigma, radius):
    x = _img(shape, seed=shape[0])
    r = radius or A.blur_radius(min(shape[:2]))
    got = np.asarray(A.gaussian_blur(x, sigma, radius=radius))
    np.testing.assert_allclose(
        np.asarray(jax.jit(lambda y, s: A.gaussian_blur(y, s, radius=radius))(x, sigma)),
        got,
        atol=1e-6,
    )
    np.testing.assert_allclose(got, _blur_ref(x, sigma, r), atol=1e-5)
    # scipy's 'mirror' mode is numpy/torchvision 'reflect' (edge pixel not repeated).
    ref = np.stack(
        [
            ndimage.gaussian_filter(x[..., c].astype(np.float64), sigma, mode="mirror", radius=r)
            for c in range(shape[2])
        ],
        -1,
    )
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_kernel_and_radius():
    assert A.blur_radius(224) == 11 and A.blur_radius(32) == 1 and A.blur_radius(96) == 4
    k = np.asarray(A.gaussian_kernel1d(1.3, 4))
    t = np.arange(-4, 5)
    np.testing.assert_allclose(
        k, np.exp(-(t**2) / (2 * 1.3**2)) / np.exp(-(t**2) / (2 * 1.3**2)).sum(), rtol=1e-6
    )
    assert abs(k.sum() - 1) < 1e-6


def test_blur_properties_and_gradient():
    const = np.full((10, 10, 3), 0.3, np.float32)
    np.testing.assert_allclose(A.gaussian_blur(const, 1.7), const, atol=1e-5)
    x = _img((12, 12, 3), seed=1)
    out = np.asarray(A.gaussian_blur(x, 2.0))
    assert out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6  # convex combination
    assert out.std() < x.std()  # smoother
    # The gradient is the transpose of the blur matrix built from the numpy reference.
    img = _img((6, 7, 1), seed=2)
    basis = np.eye(img.size).reshape(-1, *img.shape)
    mat = np.stack([_blur_ref(e, 0.9, 2).ravel() for e in basis], 1)
    w = _img((6, 7, 1), seed=3)
    g = jax.grad(lambda y: jnp.sum(w * A.gaussian_blur(y, 0.9, radius=2)))(img)
    np.testing.assert_allclose(np.asarray(g).ravel(), mat.T @ w.ravel(), atol=1e-5)


def test_random_blur_per_image_sigma_under_vmap():
    x = _img((6, 16, 16, 3), seed=4)
    keys = jax.random.split(jax.random.key(0), 6)
    fn = jax.jit(jax.vmap(lambda k, y: A.random_gaussian_blur(k, y, prob=1.0, sigma=(0.1, 2.0))))
    a = np.asarray(fn(keys, x))
    np.testing.assert_array_equal(a, np.asarray(fn(keys, x)))
    for i in range(6):  # each image with its own sigma, drawn as documented
        s = float(jax.random.uniform(jax.random.split(keys[i])[1], minval=0.1, maxval=2.0))
        np.testing.assert_allclose(a[i], _blur_ref(x[i], s, 1), atol=1e-5)
    many = jax.random.split(jax.random.key(1), 1000)
    half = jax.vmap(lambda k: A.random_gaussian_blur(k, x[0], prob=0.5))(many)
    changed = np.asarray(jnp.any(half != x[0], axis=(1, 2, 3)))
    assert 0.45 < changed.mean() < 0.55
    np.testing.assert_array_equal(A.random_gaussian_blur(keys[0], x[0], prob=0.0), x[0])


def test_bad_arguments():
    x = _img((8, 8, 3))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        A.gaussian_blur(x, 0.0)
    with pytest.raises(ValueError, match=r"radius must be in \[1, min\(H, W\) - 1\]"):
        A.gaussian_blur(x, 1.0, radius=8)
    with pytest.raises(ValueError, match="one image"):
        A.gaussian_blur(x[None], 1.0)
    with pytest.raises(ValueError, match="sigma range"):
        A.random_gaussian_blur(jax.random.key(0), x, prob=0.5, sigma=(2.0, 1.0))
