"""Plain-numpy (float64) HOG in MaskFeat's form, written from the paper and ``HOGLayerC``:
explicit loops, no vectorised tricks, so it shares no code path with ``ssl_jax.losses._hog``.

Orientation is skimage's convention (``atan2(g_row, g_col) mod pi``), see ``_hog``'s notes.
"""

import math

import numpy as np

SOBEL_ROW = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float64)  # bottom minus top
SOBEL_COL = SOBEL_ROW.T  # right minus left


def gradients(img, gradient):
    """``(g_row, g_col)`` of one ``[H, W]`` channel."""
    h, w = img.shape
    g_row, g_col = np.zeros((h, w)), np.zeros((h, w))
    if gradient == "central":
        for i in range(1, h - 1):
            g_row[i] = img[i + 1] - img[i - 1]
        for j in range(1, w - 1):
            g_col[:, j] = img[:, j + 1] - img[:, j - 1]
        return g_row, g_col
    p = np.pad(img, 1, mode="reflect")
    for i in range(h):
        for j in range(w):
            win = p[i : i + 3, j : j + 3]
            g_row[i, j] = np.sum(win * SOBEL_ROW)
            g_col[i, j] = np.sum(win * SOBEL_COL)
    return g_row, g_col


def gkern(size):
    """``get_gkern(size, size // 2)`` of SlowFast: outer product of a centred Gaussian."""
    n = np.arange(size, dtype=np.float64)
    n = (n - n.mean()) / (size // 2)
    g = np.exp(-0.5 * n**2)
    k = np.outer(g, g)
    return k / k.sum()


def cell_histograms(img, cell, bins, gradient="sobel", window=0, bins_of=None):
    """``[rows, cols, C, bins]`` cell sums of gradient magnitudes for an ``[H, W, C]`` image.

    ``bins_of``: take each pixel's orientation bin from this image instead (finite
    differences of the a.e. derivative: the bin is piecewise constant)."""
    h, w, c = img.shape
    nr, nc = h // cell, w // cell
    out = np.zeros((nr, nc, c, bins))
    weights = np.tile(gkern(window), (h // window, w // window)) if window else np.ones((h, w))
    ref = img if bins_of is None else bins_of
    for ch in range(c):
        g_row, g_col = gradients(img[..., ch].astype(np.float64), gradient)
        r_row, r_col = gradients(ref[..., ch].astype(np.float64), gradient)
        for i in range(nr * cell):
            for j in range(nc * cell):
                mag = math.hypot(g_row[i, j], g_col[i, j]) * weights[i, j]
                theta = math.atan2(r_row[i, j], r_col[i, j]) % math.pi
                b = min(int(theta / (math.pi / bins)), bins - 1)
                out[i // cell, j // cell, ch, b] += mag
    return out


def normalize_cells(hist, k, eps):
    """Non-overlapping k x k blocks of cells, ``v / sqrt(|v|^2 + eps^2)`` per block and channel."""
    out = np.zeros_like(hist)
    nr, nc, c, _ = hist.shape
    for r in range(0, nr, k):
        for q in range(0, nc, k):
            for ch in range(c):
                block = hist[r : r + k, q : q + k, ch]
                out[r : r + k, q : q + k, ch] = block / np.sqrt(np.sum(block**2) + eps**2)
    return out


def maskfeat_targets(
    images,
    patch,
    cell,
    bins=9,
    norm_cells=1,
    gradient="sobel",
    window=None,
    eps=1e-5,
    bins_of=None,
):
    """``[B, N, (p/cell)^2 * C * bins]``: each patch's cells in (row, col, channel, bin) order."""
    window = patch if window is None else window
    _, h, w, _ = images.shape
    per = patch // cell
    out = []
    refs = images if bins_of is None else bins_of
    for x, ref in zip(np.asarray(images, np.float64), np.asarray(refs, np.float64), strict=True):
        hist = cell_histograms(x, cell, bins, gradient, window, bins_of=ref)
        hist = normalize_cells(hist, norm_cells, eps)
        rows = []
        for pi in range(h // patch):
            for pj in range(w // patch):
                cells = hist[pi * per : (pi + 1) * per, pj * per : (pj + 1) * per]
                rows.append(cells.reshape(-1))
        out.append(rows)
    return np.asarray(out)
