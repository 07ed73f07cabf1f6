"""Histograms of oriented gradients (HOG) as pure ``jnp`` ops, and MaskFeat's per-patch targets.

Orientation convention (as ``skimage.feature.hog``): ``theta = atan2(g_row, g_col) mod pi``
with ``g_row`` / ``g_col`` the derivatives towards increasing row / column index; unsigned
bins ``[k pi / n, (k + 1) pi / n)``, each pixel voting its whole gradient magnitude into one
bin (no interpolation between bins or cells, as skimage and MaskFeat's ``HOGLayerC``).

Intentional differences from the two references, all documented at the functions:

* MaskFeat's ``HOGLayerC`` takes ``atan2(gx, gy)`` of its (left-minus-right, top-minus-bottom)
  Sobel responses, i.e. ``theta' = pi / 2 - theta (mod pi)``: its bins are ours mirrored,
  with edges half a bin (10 degrees at 9 bins) from ours. Same descriptor family.
* skimage reduces a colour image to its dominant-gradient channel; we keep every channel
  (MaskFeat concatenates RGB), so the skimage comparison is on grayscale images.
* Its per-cell L2 normalisation is ``v / max(||v||, 1e-12)`` (``F.normalize``); ours is
  skimage's smooth ``v / sqrt(||v||^2 + eps^2)``. They differ only for near-empty cells.
* skimage averages magnitudes over a cell, we sum them (MaskFeat): the two differ by the
  factor ``cell_size^2``, which block normalisation removes (exactly, with ``eps`` scaled by
  the same factor).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ssl_jax.losses import _validate

GRADIENTS = ("sobel", "central")


def _check_int(value: int, name: str, minimum: int = 1) -> None:
    if not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _as_hwc(image: jax.Array) -> jax.Array:
    if np.ndim(image) == 2:
        image = image[..., None]
    _validate.check_rank(image, 3, "image ([H, W] or [H, W, C])")
    return image


def image_gradients(image: jax.Array, *, gradient: str = "sobel") -> tuple[jax.Array, jax.Array]:
    """Per-channel derivatives along rows and columns.

    Args:
      image: ``[H, W, C]`` (or ``[H, W]``), H and W >= 2.
      gradient: ``'sobel'``: the 3x3 Sobel operator on the reflect-padded image (MaskFeat's
        ``HOGLayerC``, ``F.pad(mode='reflect')``); ``'central'``: ``x[i+1] - x[i-1]`` inside
        and 0 on the first and last row / column (``skimage.feature.hog``).

    Returns:
      ``(g_row, g_col)``, each ``[H, W, C]`` float: derivatives towards increasing row and
      column index.

    References:
      Dalal & Triggs, "Histograms of Oriented Gradients for Human Detection", CVPR 2005
      (Sec. 6.2); Wei et al., "Masked Feature Prediction for Self-Supervised Visual
      Pre-Training", CVPR 2022 (``HOGLayerC`` in facebookresearch/SlowFast).
    """
    x = _as_hwc(image)
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    if x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"image must be at least 2x2 pixels, got {x.shape[:2]}")
    x = x.astype(jnp.result_type(jnp.float32, x))
    if gradient == "central":
        g_row = jnp.zeros_like(x).at[1:-1].set(x[2:] - x[:-2])
        g_col = jnp.zeros_like(x).at[:, 1:-1].set(x[:, 2:] - x[:, :-2])
        return g_row, g_col
    p = jnp.pad(x, ((1, 1), (1, 1), (0, 0)), mode="reflect")
    # Separable Sobel: [1, 2, 1] smoothing across, [-1, 0, 1] difference along.
    rows_diff = p[2:] - p[:-2]  # [H, W + 2, C]
    g_row = rows_diff[:, :-2] + 2 * rows_diff[:, 1:-1] + rows_diff[:, 2:]
    cols_diff = p[:, 2:] - p[:, :-2]  # [H + 2, W, C]
    g_col = cols_diff[:-2] + 2 * cols_diff[1:-1] + cols_diff[2:]
    return g_row, g_col


def gaussian_window(size: int) -> np.ndarray:
    """MaskFeat's 2-D Gaussian weights: ``std = size // 2``, centred, summing to 1.

    Args:
      size: window side in pixels.

    Returns:
      float32 ``[size, size]``.

    References:
      Wei et al., CVPR 2022 (``get_gkern`` in facebookresearch/SlowFast); Dalal & Triggs
      2005 (Gaussian spatial window over each block).
    """
    _check_int(size, "gaussian_window")
    n = np.arange(size, dtype=np.float64)
    w = np.exp(-0.5 * ((n - n.mean()) / max(size // 2, 1)) ** 2)
    k = np.outer(w, w)
    return (k / k.sum()).astype(np.float32)


def _safe_hypot(a: jax.Array, b: jax.Array) -> jax.Array:
    sq = a * a + b * b
    # sqrt has an infinite derivative at 0: flat regions get a zero gradient instead of NaN.
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def hog_histograms(
    image: jax.Array,
    *,
    cell_size: int = 8,
    num_bins: int = 9,
    gradient: str = "sobel",
    window: int = 0,
) -> jax.Array:
    """Unsigned orientation histograms of every cell, one per channel.

    Each pixel votes its gradient magnitude ``sqrt(g_row^2 + g_col^2)`` (times the Gaussian
    window weight, if any) into the bin ``floor(theta n / pi)`` of
    ``theta = atan2(g_row, g_col) mod pi``. Cells are ``cell_size`` squares from the top-left
    corner; rows and columns past the last whole cell are dropped (as skimage).

    Args:
      image: ``[H, W, C]`` (or ``[H, W]``) float image.
      cell_size: cell side in pixels (MaskFeat: 8).
      num_bins: orientation bins over ``[0, pi)`` (9).
      gradient: ``'sobel'`` (MaskFeat) or ``'central'`` (skimage), see :func:`image_gradients`.
      window: side of MaskFeat's Gaussian window (its patch size, 16), tiled over the image
        and multiplied into the magnitudes; 0 = none. H and W must be multiples of it.

    Returns:
      ``[H // cell_size, W // cell_size, C, num_bins]``: per-cell SUMS of magnitudes
      (skimage reports the mean, ``sum / cell_size^2``).

    References:
      Dalal & Triggs, CVPR 2005; Wei et al., CVPR 2022 (Sec. 3.1, ``HOGLayerC``).
    """
    x = _as_hwc(image)
    _check_int(cell_size, "cell_size")
    _check_int(num_bins, "num_bins")
    _check_int(window, "window", minimum=0)
    h, w, c = x.shape
    nr, nc = h // cell_size, w // cell_size
    if nr < 1 or nc < 1:
        raise ValueError(f"image {(h, w)} is smaller than one cell of {cell_size} pixels")
    g_row, g_col = image_gradients(x, gradient=gradient)
    mag = _safe_hypot(g_row, g_col)
    if window:
        if h % window or w % window:
            raise ValueError(f"image size {(h, w)} is not a multiple of window {window}")
        tiled = np.tile(gaussian_window(window), (h // window, w // window))
        mag = mag * jnp.asarray(tiled, mag.dtype)[..., None]
    # The bin is a piecewise-constant function of the image: no gradient flows through it.
    theta = jnp.mod(lax.stop_gradient(jnp.arctan2(g_row, g_col)), math.pi)
    bins = jnp.clip(jnp.floor(theta * (num_bins / math.pi)), 0, num_bins - 1).astype(jnp.int32)
    votes = jax.nn.one_hot(bins, num_bins, dtype=mag.dtype) * mag[..., None]  # [H, W, C, n]
    votes = votes[: nr * cell_size, : nc * cell_size]
    votes = votes.reshape(nr, cell_size, nc, cell_size, c, num_bins)
    return votes.sum(axis=(1, 3))


def hog_normalize(
    histograms: jax.Array, *, block_size: int = 2, stride: int = 1, eps: float = 1e-5
) -> jax.Array:
    """Block normalisation: each block of ``block_size^2`` cells scaled to unit L2 norm.

    ``v / sqrt(||v||^2 + eps^2)`` per block and channel, over the block's cells and bins
    (skimage's ``block_norm='L2'``; Dalal & Triggs's L2-norm). Blocks start every ``stride``
    cells, so with ``stride < block_size`` a cell appears in several blocks (Dalal & Triggs,
    skimage: stride 1); ``block_size == stride == 1`` normalises each cell on its own
    (MaskFeat's ``HOGLayerC``).

    Args:
      histograms: ``[rows, cols, C, bins]`` cell histograms (:func:`hog_histograms`).
      block_size: cells per block side.
      stride: cells between block starts.
      eps: regulariser, > 0.

    Returns:
      ``[block_rows, block_cols, block_size, block_size, C, bins]`` with
      ``block_rows = (rows - block_size) // stride + 1`` (the layout of skimage's
      ``feature_vector=False`` output, plus the channel axis).

    References:
      Dalal & Triggs, CVPR 2005 (Sec. 6.4); ``skimage.feature.hog``.
    """
    _validate.check_rank(histograms, 4, "histograms ([rows, cols, C, bins])")
    _check_int(block_size, "block_size")
    _check_int(stride, "stride")
    _validate.check_positive(eps, "eps")
    rows, cols = histograms.shape[:2]
    if rows < block_size or cols < block_size:
        raise ValueError(f"{(rows, cols)} cells hold no block of {block_size}x{block_size} cells")
    br, bc = (rows - block_size) // stride + 1, (cols - block_size) // stride + 1
    offsets = [
        [
            histograms[
                i : i + stride * (br - 1) + 1 : stride, j : j + stride * (bc - 1) + 1 : stride
            ]
            for j in range(block_size)
        ]
        for i in range(block_size)
    ]
    blocks = jnp.stack([jnp.stack(row, axis=2) for row in offsets], axis=2)  # [br,bc,bs,bs,C,n]
    sq = jnp.sum(jnp.square(blocks), axis=(2, 3, 5), keepdims=True)
    return blocks * lax.rsqrt(sq + eps * eps)


def hog_targets(
    images: jax.Array,
    *,
    patch_size: int,
    cell_size: int = 8,
    num_bins: int = 9,
    norm_cells: int = 1,
    gradient: str = "sobel",
    window: int | None = None,
    eps: float = 1e-5,
) -> jax.Array:
    """MaskFeat's regression targets: the HOG feature map cut into ViT patches.

    HOG is computed over the whole image (no padding at patch borders, as the paper), then
    each patch's cells are flattened in ``(cell row, cell column, channel, bin)`` order;
    colour channels are kept separate and concatenated (RGB: 3 x 9 values per cell).

    Args:
      images: ``[B, H, W, C]`` (the normalised view: per-channel affine normalisation only
        rescales a channel's gradients, which the L2 normalisation removes).
      patch_size: ViT patch side ``p``; a multiple of ``cell_size * norm_cells``.
      cell_size: cell side in pixels (MaskFeat: 8 for 16-px patches; 4 or 2 for CIFAR's 4-px
        patches).
      num_bins: orientation bins (9).
      norm_cells: L2-normalise non-overlapping blocks of ``norm_cells^2`` cells per channel;
        1 = each cell on its own (the official ``HOGLayerC``), ``p / cell_size`` = each patch.
      gradient: ``'sobel'`` (MaskFeat) or ``'central'``.
      window: Gaussian window side; None = ``patch_size`` (MaskFeat), 0 = none.
      eps: normalisation regulariser.

    Returns:
      ``[B, N, (p / cell_size)^2 * C * num_bins]``, patches in row-major order (as
      ``patchify`` and the ViT's tokens).

    References:
      Wei, Fan, Xie, Wu, Yuille & Feichtenhofer, "Masked Feature Prediction for
      Self-Supervised Visual Pre-Training", CVPR 2022 (Sec. 3.1 and 4; ``HOGLayerC`` and
      ``_get_hog_label_2d`` in facebookresearch/SlowFast).
    """
    _validate.check_rank(images, 4, "images")
    _check_int(patch_size, "patch_size")
    _check_int(cell_size, "cell_size")
    _check_int(norm_cells, "norm_cells")
    b, h, w, c = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {(h, w)} is not a multiple of patch {patch_size}")
    if patch_size % (cell_size * norm_cells):
        raise ValueError(
            f"patch {patch_size} is not a multiple of cell_size * norm_cells = "
            f"{cell_size} * {norm_cells}"
        )
    window = patch_size if window is None else window

    def one(x):
        hist = hog_histograms(
            x, cell_size=cell_size, num_bins=num_bins, gradient=gradient, window=window
        )
        blocks = hog_normalize(hist, block_size=norm_cells, stride=norm_cells, eps=eps)
        br, bc, k = blocks.shape[0], blocks.shape[1], norm_cells
        # Non-overlapping blocks tile the cell grid: back to [rows, cols, C, bins].
        return blocks.transpose(0, 2, 1, 3, 4, 5).reshape(br * k, bc * k, c, num_bins)

    cells = jax.vmap(one)(images)  # [B, H / c, W / c, C, bins]
    per = patch_size // cell_size
    gh, gw = h // patch_size, w // patch_size
    x = cells.reshape(b, gh, per, gw, per, c * num_bins).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, gh * gw, per * per * c * num_bins)
