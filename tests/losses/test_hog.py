"""HOG: against ``skimage.feature.hog`` (central differences, skimage's block layout) and
against a loop-by-loop numpy form of MaskFeat's ``HOGLayerC`` (Sobel, Gaussian window, per-cell
or per-patch L2, RGB concatenated), values and gradients; eager, jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.feature import hog as sk_hog

from ssl_jax.losses import hog_histograms, hog_normalize, hog_targets, image_gradients
from tests.losses import hog_numpy
from tests.losses.helpers import fd_grad


def ours_like_skimage(img, cell, block, bins):
    """Our HOG with skimage's options; skimage averages per cell, so eps scales by cell^2."""
    hist = hog_histograms(img, cell_size=cell, num_bins=bins, gradient="central")
    return hog_normalize(hist, block_size=block, stride=1, eps=1e-5 * cell * cell)[..., 0, :]


@pytest.mark.parametrize(
    ("shape", "cell", "block", "bins"),
    [((32, 32), 8, 2, 9), ((24, 40), 4, 3, 6), ((17, 23), 5, 1, 9), ((16, 16), 4, 2, 12)],
)
def test_hog_matches_skimage_on_grayscale(shape, cell, block, bins):
    rng = np.random.default_rng(sum(shape))
    images = [rng.random(shape), rng.integers(0, 256, shape).astype(np.float64)]
    if bins % 4 == 0:
        # Integer gradients hit 45 degrees exactly, a bin edge when 4 divides the bins: float32
        # and float64 may then disagree on the side. Keep the float image only.
        images = images[:1]
    for img in images:
        want = sk_hog(
            img,
            orientations=bins,
            pixels_per_cell=(cell, cell),
            cells_per_block=(block, block),
            block_norm="L2",
            feature_vector=False,
        )
        got = ours_like_skimage(jnp.asarray(img, jnp.float32), cell, block, bins)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=2e-6)
    jitted = jax.jit(ours_like_skimage, static_argnums=(1, 2, 3))
    np.testing.assert_allclose(
        jitted(jnp.asarray(img, jnp.float32), cell, block, bins), want, atol=2e-6
    )


def test_hog_vmap_over_images_matches_skimage():
    rng = np.random.default_rng(0)
    batch = rng.random((3, 16, 24))
    got = jax.vmap(lambda x: ours_like_skimage(x, 4, 2, 9))(jnp.asarray(batch, jnp.float32))
    for img, g in zip(batch, got, strict=True):
        want = sk_hog(img, 9, (4, 4), (2, 2), block_norm="L2", feature_vector=False)
        np.testing.assert_allclose(g, want, atol=2e-6)


@pytest.mark.parametrize(
    ("shape", "patch", "cell", "norm_cells", "window", "gradient"),
    [
        ((2, 16, 16, 3), 8, 4, 1, None, "sobel"),  # MaskFeat's form at 1/2 scale
        ((2, 16, 16, 3), 8, 4, 2, None, "sobel"),  # one L2 block per patch
        ((1, 32, 32, 3), 4, 4, 1, None, "sobel"),  # CIFAR: one cell per 4px patch
        ((2, 24, 16, 1), 8, 2, 2, 0, "central"),  # no window, grayscale, non-square
    ],
)
def test_hog_targets_match_numpy_maskfeat(shape, patch, cell, norm_cells, window, gradient):
    x = np.random.default_rng(patch + cell).normal(size=shape).astype(np.float32)
    kw = dict(patch_size=patch, cell_size=cell, norm_cells=norm_cells, window=window)
    got = hog_targets(jnp.asarray(x), gradient=gradient, **kw)
    want = hog_numpy.maskfeat_targets(
        x, patch, cell, norm_cells=norm_cells, gradient=gradient, window=window
    )
    n = (shape[1] // patch) * (shape[2] // patch)
    assert got.shape == want.shape == (shape[0], n, (patch // cell) ** 2 * shape[3] * 9)
    np.testing.assert_allclose(got, want, atol=2e-6)
    jitted = jax.jit(lambda a: hog_targets(a, gradient=gradient, **kw))
    np.testing.assert_allclose(jitted(jnp.asarray(x)), want, atol=2e-6)
    # Unit L2 norm per block and channel (here: per cell or per patch).
    per_block = want.reshape(shape[0], n, -1, shape[3], 9) if norm_cells == 1 else None
    if per_block is not None:
        np.testing.assert_allclose(np.linalg.norm(per_block, axis=-1), 1.0, atol=1e-5)


def test_hog_gradients_match_finite_differences():
    x = np.random.default_rng(1).normal(size=(1, 8, 8, 3)).astype(np.float32)
    w = np.random.default_rng(2).normal(size=(1, 4, 2 * 2 * 3 * 9))

    def ref(img):
        return float(np.sum(hog_numpy.maskfeat_targets(img, 4, 2, bins_of=x) * w))

    got = jax.grad(lambda a: jnp.sum(hog_targets(a, patch_size=4, cell_size=2) * w))(x)
    want = fd_grad(ref, [x])[0]
    assert np.abs(want).max() > 1e-2
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    # Flat image: zero gradient magnitudes everywhere, a finite (zero) gradient, no NaN.
    flat = jax.grad(lambda a: jnp.sum(hog_targets(a, patch_size=4, cell_size=2)))(jnp.ones_like(x))
    np.testing.assert_array_equal(flat, 0.0)


def test_hog_targets_ignore_per_channel_affine_normalisation():
    """MaskFeat computes HOG on the normalised view: a per-channel scale and shift only
    rescales each channel's gradients, which the per-channel L2 normalisation removes."""
    x = np.random.default_rng(3).random((2, 16, 16, 3)).astype(np.float32)
    scale, shift = np.array([4.0, 0.5, 2.0], np.float32), np.array([-1.0, 0.3, 2.0], np.float32)
    a = hog_targets(jnp.asarray(x), patch_size=8, cell_size=4)
    b = hog_targets(jnp.asarray(x * scale + shift), patch_size=8, cell_size=4)
    np.testing.assert_allclose(a, b, atol=5e-5)


def test_image_gradients_sobel_and_central():
    img = np.random.default_rng(4).normal(size=(7, 9, 2)).astype(np.float32)
    for gradient in ("sobel", "central"):
        g_row, g_col = image_gradients(jnp.asarray(img), gradient=gradient)
        for ch in range(2):
            want_row, want_col = hog_numpy.gradients(img[..., ch].astype(np.float64), gradient)
            np.testing.assert_allclose(g_row[..., ch], want_row, atol=1e-5)
            np.testing.assert_allclose(g_col[..., ch], want_col, atol=1e-5)
    # A ramp along the columns: zero row derivative, positive column derivative.
    ramp = jnp.tile(jnp.arange(6.0), (5, 1))
    g_row, g_col = image_gradients(ramp)
    np.testing.assert_allclose(g_row, 0.0)
    np.testing.assert_allclose(g_col[:, 1:-1, 0], 8.0)  # Sobel: (1 + 2 + 1) * 2


def test_hog_errors():
    img = jnp.zeros((16, 16, 3))
    with pytest.raises(ValueError, match="gradient must be one of"):
        image_gradients(img, gradient="prewitt")
    with pytest.raises(ValueError, match="at least 2x2"):
        image_gradients(jnp.zeros((1, 5)))
    with pytest.raises(ValueError, match="rank 3"):
        hog_histograms(jnp.zeros((2, 16, 16, 3)))
    with pytest.raises(ValueError, match="cell_size must be an int >= 1"):
        hog_histograms(img, cell_size=0)
    with pytest.raises(ValueError, match="smaller than one cell"):
        hog_histograms(img, cell_size=32)
    with pytest.raises(ValueError, match="multiple of window"):
        hog_histograms(img, cell_size=4, window=6)
    with pytest.raises(ValueError, match="no block"):
        hog_normalize(jnp.zeros((2, 2, 3, 9)), block_size=3)
    with pytest.raises(ValueError, match="eps must be > 0"):
        hog_normalize(jnp.zeros((2, 2, 3, 9)), eps=0.0)
    with pytest.raises(ValueError, match="multiple of patch"):
        hog_targets(jnp.zeros((1, 20, 20, 3)), patch_size=8)
    with pytest.raises(ValueError, match="cell_size \\* norm_cells"):
        hog_targets(jnp.zeros((1, 16, 16, 3)), patch_size=8, cell_size=4, norm_cells=3)
