"""Rotation, classification (patch position / jigsaw) and colourisation objectives vs numpy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import (
    classification_loss,
    colorization_class_weights,
    colorization_loss,
    rotate_images,
    rotation_loss,
    soft_encode_ab,
)
from tests.losses.helpers import MODES, check_distributed, fd_grad, normal

# ---------------------------------------------------------------- rotation


def rotnet_rotate(img, k):
    """RotNet's ``rotate_img`` (numpy, HWC): flips and transposes, counter-clockwise."""
    if k == 0:
        return img
    if k == 1:
        return np.flipud(np.transpose(img, (1, 0, 2)))
    if k == 2:
        return np.fliplr(np.flipud(img))
    return np.transpose(np.flipud(img), (1, 0, 2))


@pytest.mark.parametrize("shape", [(2, 4, 4, 3), (3, 5, 5, 1)])
def test_rotate_images_matches_rotnet(shape):
    (images,) = normal(sum(shape), shape)
    rotated, labels = rotate_images(images)
    assert rotated.shape == (4 * shape[0], *shape[1:])
    assert labels.dtype == jnp.int32
    np.testing.assert_array_equal(labels, np.tile(np.arange(4), shape[0]))
    for i, k in itertools.product(range(shape[0]), range(4)):
        np.testing.assert_array_equal(rotated[4 * i + k], rotnet_rotate(images[i], k))
    jitted, _ = jax.jit(rotate_images)(images)
    np.testing.assert_array_equal(jitted, rotated)


def test_four_quarter_turns_are_identity():
    (images,) = normal(1, (2, 6, 6, 3))
    rotated, _ = rotate_images(images)
    quarter = rotated[1::4]
    again, _ = rotate_images(quarter)
    np.testing.assert_array_equal(again[1::4], rotated[2::4])  # 90 + 90 = 180
    np.testing.assert_array_equal(again[3::4], images)  # 90 + 270 = 360
    x = images
    for _ in range(4):
        x = rotate_images(x)[0][1::4]
    np.testing.assert_array_equal(x, images)


def test_rotate_images_errors():
    with pytest.raises(ValueError, match="square"):
        rotate_images(jnp.zeros((1, 4, 6, 3)))
    with pytest.raises(ValueError, match="rank 4"):
        rotate_images(jnp.zeros((4, 4, 3)))


# ---------------------------------------------------------------- classification


def np_cross_entropy(logits, labels, smoothing=0.0):
    logits = np.asarray(logits, np.float64)
    k = logits.shape[1]
    total = 0.0
    for row, y in zip(logits, labels, strict=True):
        log_p = row - np.log(np.sum(np.exp(row)))
        target = np.full(k, smoothing / k)
        target[y] += 1.0 - smoothing
        total += -np.sum(target * log_p)
    return total / len(logits)


@pytest.mark.parametrize(("b", "k"), [(5, 8), (3, 24)])  # patch position (8), jigsaw (24)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_classification_matches_numpy(b, k, smoothing):
    (logits,) = normal(b * k, (b, k), scale=2.0)
    labels = np.random.default_rng(b).integers(0, k, size=b).astype(np.int32)
    loss = classification_loss(logits, labels, label_smoothing=smoothing)
    np.testing.assert_allclose(loss, np_cross_entropy(logits, labels, smoothing), rtol=1e-5)
    jitted = jax.jit(lambda a, y: classification_loss(a, y, label_smoothing=smoothing))
    np.testing.assert_allclose(jitted(logits, labels), loss, rtol=1e-6)
    grad = jax.grad(classification_loss)(logits, labels, label_smoothing=smoothing)
    (ref,) = fd_grad(lambda a: np_cross_entropy(a, labels, smoothing), (logits,))
    np.testing.assert_allclose(grad, ref, rtol=1e-4, atol=1e-6)


def test_classification_label_checks():
    (logits,) = normal(2, (4, 8))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 8\)"):
        classification_loss(logits, jnp.array([0, 1, 8, 2]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 8\)"):
        classification_loss(logits, np.array([0, -1, 3, 2]))
    with pytest.raises(ValueError, match="integers"):
        classification_loss(logits, jnp.zeros(4))
    with pytest.raises(ValueError, match="one entry per row"):
        classification_loss(logits, jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match="label_smoothing"):
        classification_loss(logits, jnp.zeros(4, jnp.int32), label_smoothing=1.5)
    # Under jit the values are unknown at trace time: a bad label makes the loss NaN.
    bad = jax.jit(classification_loss)(logits, jnp.array([0, 1, 9, 2]))
    assert np.isnan(float(bad))
    good = jax.jit(classification_loss)(logits, jnp.array([0, 1, 7, 2]))
    assert np.isfinite(float(good))


def test_rotation_loss_and_accuracy():
    (logits,) = normal(3, (8, 4))
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3], np.int32)
    loss, acc = rotation_loss(logits, labels)
    np.testing.assert_allclose(loss, np_cross_entropy(logits, labels), rtol=1e-5)
    np.testing.assert_allclose(acc, np.mean(np.argmax(logits, 1) == labels))
    perfect = 10.0 * jax.nn.one_hot(labels, 4)
    loss, acc = jax.jit(rotation_loss)(perfect, labels)
    assert float(acc) == 1.0 and float(loss) < 1e-3
    with pytest.raises(ValueError, match="4 columns"):
        rotation_loss(logits[:, :3], labels)


# ---------------------------------------------------------------- colourisation


def np_soft_encode(ab, bins, k=5, sigma=5.0):
    flat = np.asarray(ab, np.float64).reshape(-1, 2)
    out = np.zeros((len(flat), len(bins)))
    for i, v in enumerate(flat):
        d = np.linalg.norm(bins - v, axis=1)
        near = np.argsort(d)[:k]
        w = np.exp(-(d[near] ** 2) / (2 * sigma**2))
        out[i, near] = w / w.sum()
    return out.reshape(*np.shape(ab)[:-1], len(bins))


def ab_grid():
    """A 10-spaced grid of bin centres (the paper quantises ab with grid size 10)."""
    axis = np.arange(-40, 50, 10, dtype=np.float32)
    return np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)


def test_soft_encode_matches_numpy():
    bins = ab_grid()
    ab = np.random.default_rng(0).uniform(-45, 45, size=(2, 3, 4, 2)).astype(np.float32)
    z = soft_encode_ab(ab, bins)
    assert z.shape == (2, 3, 4, len(bins))
    np.testing.assert_allclose(z, np_soft_encode(ab, bins), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(z.sum(-1), 1.0, rtol=1e-6)
    assert np.all((z > 0).sum(-1) == 5)
    with pytest.raises(ValueError, match="num_neighbors"):
        soft_encode_ab(ab, bins, num_neighbors=0)
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
        soft_encode_ab(ab[..., :1], bins)


def np_class_weights(prior, lam=0.5, bins=None, sigma=5.0):
    p = np.asarray(prior, np.float64)
    if bins is not None:
        d2 = ((bins[:, None, :] - bins[None, :, :]) ** 2).sum(-1)
        p = np.array(
            [
                sum(p[r] * np.exp(-d2[q, r] / (2 * sigma**2)) for r in range(len(p)))
                for q in range(len(p))
            ]
        )
    p = p / p.sum()
    w = 1.0 / ((1 - lam) * p + lam / len(p))
    return w / (p * w).sum()


@pytest.mark.parametrize("smooth", [False, True])
def test_class_weights_match_numpy(smooth):
    bins = ab_grid()
    prior = np.random.default_rng(1).exponential(size=len(bins)).astype(np.float32) ** 3
    w = colorization_class_weights(prior, bins=bins if smooth else None)
    np.testing.assert_allclose(w, np_class_weights(prior, bins=bins if smooth else None), rtol=1e-5)
    p = np_class_weights(np.ones(4))
    np.testing.assert_allclose(p, 1.0)  # uniform prior: no rebalancing
    np.testing.assert_allclose(colorization_class_weights(jnp.ones(4)), 1.0, rtol=1e-6)
    # Normalised so that E_p[w] = 1; rare bins weigh more.
    pn = prior / prior.sum()
    assert abs(float(np.sum(pn * colorization_class_weights(prior))) - 1.0) < 1e-5
    assert np.argmax(colorization_class_weights(prior)) == np.argmin(prior)
    with pytest.raises(ValueError, match="non-negative"):
        colorization_class_weights(-prior)
    with pytest.raises(ValueError, match="lambda_"):
        colorization_class_weights(prior, lambda_=2.0)
    with pytest.raises(ValueError, match="bins must have shape"):
        colorization_class_weights(prior, bins=bins[:3])


def np_colorization(logits, target, weights):
    logits, target = np.asarray(logits, np.float64), np.asarray(target, np.float64)
    b, h, w, _ = logits.shape
    total = 0.0
    for i, y, x in itertools.product(range(b), range(h), range(w)):
        row = logits[i, y, x]
        log_p = row - np.log(np.sum(np.exp(row)))
        v = 1.0 if weights is None else weights[np.argmax(target[i, y, x])]
        total += -v * np.sum(target[i, y, x] * log_p)
    return total / (b * h * w)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(2, 2, 3, 5), (1, 3, 3, 7)])
def test_colorization_loss_matches_numpy(weighted, shape):
    logits, raw = normal(sum(shape), shape, shape)
    target = np.asarray(jax.nn.softmax(3.0 * raw, axis=-1))
    weights = np.linspace(0.5, 2.0, shape[-1]).astype(np.float32) if weighted else None
    loss = colorization_loss(logits, target, class_weights=weights)
    np.testing.assert_allclose(loss, np_colorization(logits, target, weights), rtol=1e-5)
    fn = lambda a, t: colorization_loss(a, t, class_weights=weights)
    np.testing.assert_allclose(jax.jit(fn)(logits, target), loss, rtol=1e-6)
    g_logits, g_target = jax.grad(fn, (0, 1))(logits, target)
    (ref,) = fd_grad(lambda a: np_colorization(a, target, weights), (logits,))
    np.testing.assert_allclose(g_logits, ref, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(g_target, 0.0)


def test_colorization_end_to_end_and_errors():
    bins = ab_grid()
    ab = np.random.default_rng(2).uniform(-40, 40, size=(1, 2, 2, 2)).astype(np.float32)
    target = soft_encode_ab(ab, bins)
    # Predicting the target distribution exactly gives its entropy (the minimum).
    best = colorization_loss(jnp.log(target + 1e-30), target)
    entropy = -np.sum(np.where(target > 0, target * np.log(np.maximum(target, 1e-30)), 0)) / 4
    np.testing.assert_allclose(best, entropy, rtol=1e-4)
    assert float(colorization_loss(jnp.zeros_like(target), target)) > float(best)
    with pytest.raises(ValueError, match="same shape"):
        colorization_loss(target[..., :5], target)
    with pytest.raises(ValueError, match="class_weights must have shape"):
        colorization_loss(target, target, class_weights=jnp.ones(3))
    with pytest.raises(ValueError, match="rank 4"):
        colorization_loss(target[0], target[0])


# ---------------------------------------------------------------- distribution contract


@pytest.mark.parametrize("mode", MODES)
def test_classification_and_rotation_distributed(mesh, mode):
    (logits,) = normal(5, (16, 4))
    labels = jnp.asarray(np.random.default_rng(5).integers(0, 4, size=16), jnp.int32)

    def loss(a, axis_name):
        ce = classification_loss(
            a, labels_for(a, axis_name), label_smoothing=0.1, axis_name=axis_name
        )
        rot, acc = rotation_loss(a, labels_for(a, axis_name), axis_name=axis_name)
        return ce + rot, {"accuracy": acc}

    def labels_for(a, axis_name):
        if axis_name is None:
            return labels
        start = jax.lax.axis_index(axis_name) * a.shape[0]
        return jax.lax.dynamic_slice_in_dim(labels, start, a.shape[0])

    check_distributed(loss, (logits,), mesh, mode)


@pytest.mark.parametrize("mode", MODES)
def test_colorization_distributed(mesh, mode):
    logits, raw = normal(6, (16, 2, 2, 5), (16, 2, 2, 5))
    target = jax.nn.softmax(3.0 * raw, axis=-1)
    weights = jnp.linspace(0.5, 2.0, 5)

    def loss(a, t, axis_name):
        return colorization_loss(a, t, class_weights=weights, axis_name=axis_name), {}

    check_distributed(loss, (logits, target), mesh, mode, zero_grads=(1,))
