"""sRGB <-> CIE Lab against scikit-image, and the quantised ab gamut against a brute force."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import color

from ssl_jax.augment import lab

# Colours on the piecewise boundaries (sRGB gamma at 0.04045, the Lab toe) and the corners.
EDGES = np.array(
    [
        [0.0, 0.0, 0.0],
        [1.0, 1.0, 1.0],
        [0.04045, 0.04045, 0.04045],
        [0.02, 0.5, 1.0],
        [1.0, 0.0, 1.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        [1.0, 1.0, 0.0],
        [0.003, 0.001, 0.0],
    ]
)


def _images(seed, shape):
    return np.random.default_rng(seed).uniform(size=(*shape, 3))


@pytest.mark.parametrize("shape", [(7,), (2, 5, 6), (3, 4, 4, 2)])
def test_rgb_to_lab_matches_skimage(shape):
    x = _images(0, shape)
    want = color.rgb2lab(x)
    got = lab.rgb_to_lab(jnp.asarray(x, jnp.float32))
    assert got.dtype == jnp.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)
    np.testing.assert_allclose(jax.jit(lab.rgb_to_lab)(x.astype(np.float32)), want, atol=2e-4)
    np.testing.assert_allclose(lab.rgb_to_lab(EDGES), color.rgb2lab(EDGES), atol=2e-4)


def test_vmap_and_uint8_scaled_inputs():
    x = _images(1, (4, 6, 6))
    got = jax.vmap(lab.rgb_to_lab)(x.astype(np.float32))
    np.testing.assert_allclose(got, color.rgb2lab(x), atol=2e-4)
    back = jax.vmap(lab.lab_to_rgb)(got)
    np.testing.assert_allclose(back, x, atol=2e-5)
    u8 = (x * 255).astype(np.uint8)
    np.testing.assert_allclose(lab.rgb_to_lab(u8 / 255.0), color.rgb2lab(u8), atol=2e-4)


@pytest.mark.parametrize("shape", [(9,), (2, 8, 8)])
def test_lab_to_rgb_matches_skimage_in_and_out_of_gamut(shape):
    rng = np.random.default_rng(2)
    inside = color.rgb2lab(_images(3, shape))
    np.testing.assert_allclose(lab.lab_to_rgb(inside), color.lab2rgb(inside), atol=2e-5)
    # Arbitrary Lab values: most are out of gamut, where skimage clips (negative Z included).
    boxes = np.stack(
        [
            rng.uniform(0, 100, shape),
            rng.uniform(-128, 127, shape),
            rng.uniform(-128, 127, shape),
        ],
        axis=-1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about the clipped negative Z values
        want = color.lab2rgb(boxes)
    got = jax.jit(lab.lab_to_rgb)(boxes.astype(np.float32))
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0


def test_gradients_are_finite_and_match_finite_differences_of_skimage():
    x = np.concatenate([EDGES, _images(4, (6,))])
    w = np.random.default_rng(5).normal(size=x.shape)

    def ref(v):
        return float(np.sum(w * color.rgb2lab(v.reshape(x.shape))))

    grad = jax.grad(lambda v: jnp.sum(w * lab.rgb_to_lab(v)))(jnp.asarray(x, jnp.float32))
    assert np.all(np.isfinite(grad))
    # One-sided differences away from the kinks (0.04045, the Lab toe) and the cube faces.
    smooth = (np.abs(x - 0.04045) > 1e-3) & (x > 1e-3)
    h = 1e-6
    fd = np.zeros_like(x)
    for idx in zip(*np.nonzero(smooth), strict=True):
        down = x.copy()
        down[idx] -= h
        fd[idx] = (ref(x) - ref(down)) / h
    np.testing.assert_allclose(np.where(smooth, grad, 0), fd, rtol=2e-3, atol=2e-2)
    back = jax.grad(lambda v: jnp.sum(lab.lab_to_rgb(v)))(lab.rgb_to_lab(x[3:]))
    assert np.all(np.isfinite(back))


def test_bad_channels_raise():
    with pytest.raises(ValueError, match="3 channels"):
        lab.rgb_to_lab(jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="3 channels"):
        lab.lab_to_rgb(jnp.zeros((4,)))


def _brute_force_bins(reach: float) -> set[tuple[int, int]]:
    """Grid centres within L-infinity ``reach`` of the ab of any 8-bit colour on the cube's
    faces (scikit-image's conversion), every centre of a wide grid tried against every colour."""
    v = np.arange(256) / 255.0
    a, b = (g.ravel() for g in np.meshgrid(v, v, indexing="ij"))
    faces = []
    for axis in range(3):
        for value in (0.0, 1.0):
            face = np.insert(np.stack([a, b], 1), axis, value, axis=1)
            faces.append(face)
    ab = color.rgb2lab(np.concatenate(faces)[None])[0, :, 1:]
    ab = np.unique(np.round(ab, 6), axis=0)
    grid = np.arange(-140, 141, 10)
    kept = set()
    for ca in grid:
        near_a = ab[np.abs(ab[:, 0] - ca) <= reach]
        for cb in grid:
            if near_a.size and np.any(np.abs(near_a[:, 1] - cb) <= reach):
                kept.add((int(ca), int(cb)))
    return kept


def test_ab_bins_are_the_papers_313_and_match_a_brute_force():
    bins = lab.ab_bins()
    assert bins.shape == (lab.NUM_AB_BINS, 2) == (313, 2) and bins.dtype == np.float32
    assert set(map(tuple, bins.astype(int).tolist())) == _brute_force_bins(5 + lab.AB_BIN_MARGIN)
    # Sorted by a then b, on the grid of multiples of 10, with the paper's extents.
    order = np.lexsort((bins[:, 1], bins[:, 0]))
    np.testing.assert_array_equal(order, np.arange(len(bins)))
    np.testing.assert_array_equal(bins % 10, 0)
    assert (bins[:, 0].min(), bins[:, 0].max(), bins[:, 1].min(), bins[:, 1].max()) == (
        -90,
        100,
        -110,
        100,
    )
    # The first entries of Zhang et al.'s pts_in_hull.npy: a = -90 has b in 50..90, and the
    # a = -80 row starts at b = 20.
    np.testing.assert_array_equal(bins[:5], [[-90, b] for b in range(50, 100, 10)])
    np.testing.assert_array_equal(bins[5], [-80, 20])
    np.testing.assert_array_equal(lab.ab_bins(), bins)  # cached and deterministic


def test_ab_bins_without_margin_are_the_cells_the_gamut_touches():
    tight = lab.ab_bins(margin=0.0)
    assert tight.shape == (261, 2)
    tight_set = set(map(tuple, tight.astype(int).tolist()))
    assert tight_set == _brute_force_bins(5.0)
    assert tight_set <= set(map(tuple, lab.ab_bins().astype(int).tolist()))
    # The cube's faces suffice: interior colours fall in no other cell.
    inside = np.random.default_rng(6).integers(0, 256, (20000, 3)) / 255.0
    cells = np.round(color.rgb2lab(inside[None])[0, :, 1:] / 10).astype(int) * 10
    assert set(map(tuple, cells.tolist())) <= tight_set


def test_ab_bins_errors():
    with pytest.raises(ValueError, match="grid_size"):
        lab.ab_bins(grid_size=0)
    with pytest.raises(ValueError, match="margin"):
        lab.ab_bins(margin=-1.0)
