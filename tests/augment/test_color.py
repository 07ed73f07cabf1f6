"""Colour ops against tf.image / numpy / PIL on the same parameters, plus properties."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance

from ssl_jax import augment as A

SHAPES = [(5, 7, 3), (2, 9, 4, 3), (3, 1, 6, 6, 3)]


def _img(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _three_ways(fn, x, *args):
    """fn eagerly, under jit, and under vmap over the leading axis: all must agree."""
    eager = np.asarray(fn(x, *args))
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(x, *args)), eager, atol=1e-6)
    vmapped = jax.vmap(lambda xi: fn(xi, *args))(x) if x.ndim > 3 else None
    if vmapped is not None:
        np.testing.assert_allclose(np.asarray(vmapped), eager, atol=1e-6)
    return eager


TF_REFERENCES = [
    ("brightness", A.adjust_brightness, tf.image.adjust_brightness, [-0.3, 0.0, 0.45]),
    ("contrast", A.adjust_contrast, tf.image.adjust_contrast, [0.0, 0.4, 1.0, 1.8]),
    ("saturation", A.adjust_saturation, tf.image.adjust_saturation, [0.0, 0.3, 1.0, 1.7]),
    ("hue", A.adjust_hue, tf.image.adjust_hue, [-0.45, -0.1, 0.0, 0.2, 0.5]),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("name", "ours", "ref", "values"), TF_REFERENCES, ids=lambda v: str(v)[:12]
)
def test_matches_tf_image(shape, name, ours, ref, values):
    x = _img(shape, seed=len(shape))
    for v in values:
        got = _three_ways(ours, x, v)
        want = np.clip(ref(x, v).numpy(), 0.0, 1.0)
        np.testing.assert_allclose(got, want, atol=2e-6, err_msg=f"{name}={v}")
        assert got.min() >= 0.0 and got.max() <= 1.0


@pytest.mark.parametrize("shape", SHAPES)
def test_grayscale_hsv_flip_match_tf(shape):
    x = _img(shape, seed=3)
    np.testing.assert_allclose(
        _three_ways(A.rgb_to_grayscale, x), tf.image.rgb_to_grayscale(x), atol=1e-6
    )
    gray3 = _three_ways(A.to_grayscale, x)
    np.testing.assert_allclose(
        gray3, np.repeat(tf.image.rgb_to_grayscale(x).numpy(), 3, -1), atol=1e-6
    )
    hsv = _three_ways(A.rgb_to_hsv, x)
    np.testing.assert_allclose(hsv, tf.image.rgb_to_hsv(x), atol=1e-6)
    np.testing.assert_allclose(_three_ways(A.hsv_to_rgb, hsv), tf.image.hsv_to_rgb(hsv), atol=1e-6)
    np.testing.assert_allclose(_three_ways(A.hsv_to_rgb, hsv), x, atol=1e-6)  # round trip
    flat = x.reshape((-1, *x.shape[-3:]))  # tf.image.flip_left_right takes rank 3 or 4
    np.testing.assert_array_equal(
        _three_ways(A.flip_left_right, x), tf.image.flip_left_right(flat).numpy().reshape(x.shape)
    )


def test_hsv_of_gray_and_primary_colours():
    x = np.array([[[0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]], np.float32)
    np.testing.assert_allclose(A.rgb_to_hsv(x)[0, :, 0], [0, 0, 1 / 3, 2 / 3, 0], atol=1e-7)
    np.testing.assert_allclose(A.rgb_to_hsv(x)[0, :, 1], [0, 1, 1, 1, 0], atol=1e-7)


@pytest.mark.parametrize("factor", [0.0, 0.5, 1.0, 1.6])
def test_multiplicative_brightness_matches_numpy_and_pil(factor):
    x = _img((6, 8, 3), seed=4)
    got = _three_ways(A.scale_brightness, x, factor)
    np.testing.assert_allclose(got, np.clip(x * factor, 0, 1), atol=1e-7)
    u8 = (x * 255).round().astype(np.uint8)
    pil = np.asarray(ImageEnhance.Brightness(Image.fromarray(u8)).enhance(factor), np.float32)
    ours = np.asarray(A.scale_brightness(u8.astype(np.float32) / 255, factor)) * 255
    assert np.abs(ours - pil).max() <= 1.0  # PIL rounds to uint8


def test_solarize_and_normalize_match_numpy():
    x = _img((2, 5, 6, 3), seed=5)
    for t in (0.0, 0.3, 0.5, 1.01):
        np.testing.assert_allclose(_three_ways(A.solarize, x, t), np.where(x < t, x, 1 - x))
    np.testing.assert_array_equal(A.solarize(x, 1.01), x)  # nothing above the threshold
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    got = _three_ways(A.normalize, x, mean, std)
    np.testing.assert_allclose(got, (x - np.array(mean)) / np.array(std), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="std must be > 0"):
        A.normalize(x, mean, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="need 3 entries"):
        A.normalize(x, (0.5,), (1.0,))


def test_identity_at_zero_strength():
    x = _img((7, 6, 3), seed=6)
    np.testing.assert_array_equal(A.adjust_brightness(x, 0.0), x)
    np.testing.assert_array_equal(A.scale_brightness(x, 1.0), x)
    np.testing.assert_allclose(A.adjust_contrast(x, 1.0), x, atol=1e-7)
    np.testing.assert_allclose(A.adjust_saturation(x, 1.0), x, atol=1e-6)
    np.testing.assert_allclose(A.adjust_hue(x, 0.0), x, atol=1e-6)
    key = jax.random.key(0)
    np.testing.assert_array_equal(A.color_jitter(key, x), x)
    strengths = dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2)
    np.testing.assert_array_equal(A.random_color_jitter(key, x, prob=0.0, **strengths), x)
    np.testing.assert_array_equal(A.random_grayscale(key, x, prob=0.0), x)
    np.testing.assert_array_equal(A.random_solarize(key, x, prob=0.0), x)


def _jitter_reference(key, x, b, c, s, h, mode):
    """tf.image ops in the order and with the factors that color_jitter draws from key."""
    k_order, k_b, k_c, k_s, k_h = jax.random.split(key, 5)

    def factor(k, v):
        return float(jax.random.uniform(k, minval=max(0.0, 1 - v), maxval=1 + v))

    if mode == "additive":
        d = float(jax.random.uniform(k_b, minval=-b, maxval=b))
        bright = lambda y: tf.clip_by_value(tf.image.adjust_brightness(y, d), 0, 1)
    else:
        f_b = factor(k_b, b)
        bright = lambda y: tf.clip_by_value(y * f_b, 0, 1)
    f_c, f_s = factor(k_c, c), factor(k_s, s)
    d_h = float(jax.random.uniform(k_h, minval=-h, maxval=h))
    ops = [
        bright,
        lambda y: tf.clip_by_value(tf.image.adjust_contrast(y, f_c), 0, 1),
        lambda y: tf.clip_by_value(tf.image.adjust_saturation(y, f_s), 0, 1),
        lambda y: tf.clip_by_value(tf.image.adjust_hue(y, d_h), 0, 1),
    ]
    order = [int(i) for i in jax.random.permutation(k_order, 4)]
    y = tf.constant(x)
    for i in order:
        y = ops[i](y)
    return y.numpy(), tuple(order)


@pytest.mark.parametrize("mode", ["multiplicative", "additive"])
def test_color_jitter_is_tf_ops_in_random_order(mode):
    x = _img((6, 5, 3), seed=7)
    strengths = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, brightness_mode=mode)
    jitter = jax.jit(lambda k, y: A.color_jitter(k, y, **strengths))
    orders = set()
    for i in range(40):
        key = jax.random.key(i)
        want, order = _jitter_reference(key, x, 0.4, 0.4, 0.4, 0.1, mode)
        orders.add(order)
        np.testing.assert_allclose(np.asarray(jitter(key, x)), want, atol=1e-5)
    assert len(orders) >= 15  # of 24 orders: the order really is random


def test_random_ops_vmap_determinism_and_frequency():
    x = _img((64, 4, 4, 3), seed=8)
    keys = jax.random.split(jax.random.key(1), 64)
    strengths = dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2)
    fn = jax.jit(jax.vmap(lambda k, y: A.random_color_jitter(k, y, prob=0.8, **strengths)))
    a, b = np.asarray(fn(keys, x)), np.asarray(fn(keys, x))
    np.testing.assert_array_equal(a, b)  # same keys, same result
    loop = np.stack(
        [A.random_color_jitter(k, y, prob=0.8, **strengths) for k, y in zip(keys, x, strict=True)]
    )
    np.testing.assert_allclose(a, loop, atol=1e-6)  # vmap == per-image loop
    other = np.asarray(fn(jax.random.split(jax.random.key(2), 64), x))
    assert not np.allclose(a, other)  # other keys, other result
    assert a.min() >= 0 and a.max() <= 1
    changed = np.abs(a - x).reshape(64, -1).max(1) > 0
    assert 0.6 < changed.mean() < 0.95  # prob 0.8
    many = jax.random.split(jax.random.key(3), 2000)
    gray = jax.vmap(lambda k: A.random_grayscale(k, x[0], prob=0.3))(many)
    is_gray = np.asarray(jnp.all(gray[..., :1] == gray, axis=(1, 2, 3)))
    assert 0.25 < is_gray.mean() < 0.35
    sol = jax.vmap(lambda k: A.random_solarize(k, x[0], prob=0.2))(many)
    assert 0.15 < np.asarray(jnp.any(sol != x[0], axis=(1, 2, 3))).mean() < 0.25


def test_contrast_and_brightness_gradients_match_closed_form():
    # Away from clipping, d/dx sum(w * ((x - m) f + m)) = f w + (1 - f) mean(w) per channel.
    x = 0.4 + 0.2 * _img((5, 4, 3), seed=9)
    w = _img((5, 4, 3), seed=10)
    f = 1.3
    g = jax.grad(lambda y: jnp.sum(w * A.adjust_contrast(y, f)))(x)
    want = f * w + (1 - f) * w.mean(axis=(0, 1), keepdims=True)
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)
    g_b = jax.grad(lambda y: jnp.sum(w * A.scale_brightness(y, 1.2)))(x)
    np.testing.assert_allclose(g_b, 1.2 * w, rtol=1e-6)


def test_bad_arguments():
    x = _img((4, 4, 3))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"hue strength must be in \[0, 0.5\]"):
        A.color_jitter(key, x, hue=0.7)
    with pytest.raises(ValueError, match="brightness strength must be >= 0"):
        A.color_jitter(key, x, brightness=-1)
    with pytest.raises(ValueError, match="brightness_mode"):
        A.color_jitter(key, x, brightness=0.1, brightness_mode="gamma")
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\]"):
        A.random_grayscale(key, x, prob=1.5)
    with pytest.raises(ValueError, match=r"RGB, got shape \(4, 4, 1\)"):
        A.rgb_to_grayscale(x[..., :1])


def test_all_jitter_orders_have_reference_coverage():
    # The permutation draw covers every order over many keys (sanity of the sampler).
    perms = {
        tuple(int(i) for i in jax.random.permutation(jax.random.key(i), 4)) for i in range(400)
    }
    assert perms == set(itertools.permutations(range(4)))
