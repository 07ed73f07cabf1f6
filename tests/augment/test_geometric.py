"""Crop-and-resize against numpy bilinear and PIL; RandomResizedCrop box statistics; flip."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ssl_jax import augment as A


def _img(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _bilinear_ref(image, box, size):
    """Plain bilinear sampling at pixel centres, edge-clamped (no antialiasing)."""
    top, left, h, w = box
    out_h, out_w = size
    ys = top + (np.arange(out_h) + 0.5) * h / out_h - 0.5
    xs = left + (np.arange(out_w) + 0.5) * w / out_w - 0.5
    out = np.zeros((out_h, out_w, image.shape[2]))
    H, W = image.shape[:2]
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            y0, x0 = math.floor(y), math.floor(x)
            fy, fx = y - y0, x - x0
            acc = 0.0
            for dy, wy in ((0, 1 - fy), (1, fy)):
                for dx, wx in ((0, 1 - fx), (1, fx)):
                    yy = min(max(y0 + dy, 0), H - 1)
                    xx = min(max(x0 + dx, 0), W - 1)
                    acc = acc + wy * wx * image[yy, xx]
            out[i, j] = acc
    return out


def _pil_ref(image, box, size):
    """PIL's bilinear resize of a float box (antialiased when shrinking), per channel."""
    top, left, h, w = box
    channels = [
        np.asarray(
            Image.fromarray(image[..., c], mode="F").resize(
                (size[1], size[0]), Image.BILINEAR, box=(left, top, left + w, top + h)
            )
        )
        for c in range(image.shape[2])
    ]
    return np.stack(channels, -1)


# Upscaling boxes (no antialiasing effect) and shrinking ones (antialiasing matters).
UP = [
    ((1.0, 2.0, 4.0, 5.0), (7, 9)),
    ((0.0, 0.0, 10.0, 12.0), (16, 13)),
    ((2.5, 1.25, 3.5, 6.0), (8, 8)),
]
DOWN = [
    ((1.0, 2.0, 8.0, 9.0), (3, 4)),
    ((0.0, 0.0, 10.0, 12.0), (5, 5)),
    ((0.5, 3.0, 9.0, 6.0), (4, 2)),
]


@pytest.mark.parametrize(("box", "size"), UP + DOWN)
def test_crop_and_resize_matches_references(box, size):
    x = _img((10, 12, 3), seed=1)
    fn = lambda img, b: A.crop_and_resize(img, b, size)
    got = np.asarray(fn(x, jnp.asarray(box)))
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(x, jnp.asarray(box))), got, atol=1e-5)
    np.testing.assert_allclose(got, _pil_ref(x, box, size), atol=1e-5)
    plain = np.asarray(A.crop_and_resize(x, jnp.asarray(box), size, antialias=False))
    np.testing.assert_allclose(plain, _bilinear_ref(x, box, size), atol=1e-5)
    if (box, size) in UP:  # antialiasing only changes shrinking
        np.testing.assert_allclose(plain, got, atol=1e-5)


def test_crop_and_resize_vmaps_over_boxes_and_is_linear():
    x = _img((4, 10, 12, 3), seed=2)
    boxes = jnp.asarray([b for b, _ in DOWN] + [UP[0][0]])
    got = jax.vmap(lambda img, b: A.crop_and_resize(img, b, (5, 6)))(x, boxes)
    for i in range(4):
        np.testing.assert_allclose(
            got[i], _pil_ref(x[i], tuple(map(float, boxes[i])), (5, 6)), atol=2e-6
        )
    # Gradient of a linear map is its transpose: build the matrix from the numpy reference.
    img = _img((5, 6, 1), seed=3)
    box, size = (0.5, 1.0, 4.0, 4.5), (3, 3)
    basis = np.eye(img.size).reshape(-1, *img.shape)
    mat = np.stack([_bilinear_ref(e, box, size).ravel() for e in basis], 1)  # [out, in]
    w = _img((3, 3, 1), seed=4)
    g = jax.grad(
        lambda y: jnp.sum(w * A.crop_and_resize(y, jnp.asarray(box), size, antialias=False))
    )(img)
    np.testing.assert_allclose(np.asarray(g).ravel(), mat.T @ w.ravel(), atol=1e-5)


def test_whole_box_is_identity_and_resize():
    x = _img((9, 7, 3), seed=5)
    full = A.crop_and_resize(x, jnp.asarray([0.0, 0.0, 9.0, 7.0]), (9, 7))
    np.testing.assert_allclose(full, x, atol=1e-5)
    assert A.resize(x, (9, 7)) is x
    np.testing.assert_allclose(A.resize(x, (4, 3)), _pil_ref(x, (0, 0, 9, 7), (4, 3)), atol=1e-5)
    same = A.random_resized_crop(jax.random.key(0), x[:7], 7, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_allclose(same, x[:7], atol=1e-5)


@pytest.mark.parametrize(
    ("hw", "scale", "ratio"),
    [
        ((32, 32), (0.08, 1.0), (3 / 4, 4 / 3)),
        ((40, 24), (0.2, 0.5), (0.5, 2.0)),
        ((224, 224), (0.05, 0.14), (3 / 4, 4 / 3)),
    ],
)
def test_crop_boxes_follow_the_torchvision_rule(hw, scale, ratio):
    H, W = hw
    keys = jax.random.split(jax.random.key(7), 500)
    boxes = np.asarray(
        jax.jit(jax.vmap(lambda k: A.sample_crop_box(k, H, W, scale=scale, ratio=ratio)))(keys)
    )
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= H).all() and (left + w <= W).all()
    assert (h >= 1).all() and (w >= 1).all()
    area = h * w / (H * W)
    # Rounding each side by <= 0.5 px moves the area fraction by at most ~ (h + w) / (2 H W).
    slack = (h + w + 1) / (2 * H * W)
    assert (area >= scale[0] - slack).all() and (area <= scale[1] + slack).all()
    aspect = w / h
    assert (aspect >= ratio[0] * (1 - 1 / h) - 1 / h).all() and (
        aspect <= ratio[1] * (1 + 1 / h) + 1 / h
    ).all()
    # Offsets spread over the valid positions, areas over the range (not a constant box).
    assert len({(int(a), int(b)) for a, b in zip(top, left, strict=True)}) > 100
    assert area.std() > 0.1 * (scale[1] - scale[0]) / math.sqrt(12)


def test_crop_box_fallback_is_the_central_clamped_crop():
    # Square image, full area, aspect 2-3 cannot fit: torchvision's fallback (w=W, h=W/2).
    box = A.sample_crop_box(jax.random.key(0), 32, 32, scale=(1.0, 1.0), ratio=(2.0, 3.0))
    np.testing.assert_array_equal(box, [8, 0, 16, 32])
    box = A.sample_crop_box(jax.random.key(0), 20, 10, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_array_equal(box, [5, 0, 10, 10])


def test_random_resized_crop_keys_vmap_and_jit():
    x = _img((3, 16, 16, 3), seed=8)
    keys = jax.random.split(jax.random.key(1), 3)
    fn = jax.vmap(lambda k, img: A.random_resized_crop(k, img, 8))
    a = np.asarray(fn(keys, x))
    assert a.shape == (3, 8, 8, 3)
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(keys, x)), a, atol=1e-5)
    for i in range(3):  # vmap == per image, and == crop_and_resize of the sampled box
        box = A.sample_crop_box(keys[i], 16, 16)
        np.testing.assert_allclose(a[i], A.crop_and_resize(x[i], box, (8, 8)), atol=1e-5)
    b = np.asarray(fn(jax.random.split(jax.random.key(2), 3), x))
    assert not np.allclose(a, b)
    assert a.min() >= 0 and a.max() <= 1  # bilinear + triangle filter: a convex combination


def test_random_flip():
    x = _img((5, 6, 3), seed=9)
    keys = jax.random.split(jax.random.key(0), 1000)
    out = jax.jit(jax.vmap(lambda k: A.random_flip(k, x, prob=0.5)))(keys)
    flipped = np.asarray(jnp.all(out == x[:, ::-1], axis=(1, 2, 3)))
    kept = np.asarray(jnp.all(out == x, axis=(1, 2, 3)))
    assert (flipped ^ kept).all() and 0.45 < flipped.mean() < 0.55
    np.testing.assert_array_equal(A.random_flip(keys[0], x, prob=0.0), x)
    np.testing.assert_array_equal(A.random_flip(keys[0], x, prob=1.0), x[:, ::-1])


def test_bad_arguments():
    x = _img((2, 5, 6, 3))
    with pytest.raises(ValueError, match=r"one image \[H, W, C\]"):
        A.random_resized_crop(jax.random.key(0), x, 4)
    with pytest.raises(ValueError, match="scale must satisfy"):
        A.sample_crop_box(jax.random.key(0), 8, 8, scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="ratio must satisfy"):
        A.sample_crop_box(jax.random.key(0), 8, 8, ratio=(0.0, 1.0))
    with pytest.raises(ValueError, match="flip probability"):
        A.random_flip(jax.random.key(0), x[0], prob=2.0)
