"""sRGB <-> CIE L*a*b* as pure ``jnp`` ops, and the quantised ab gamut of colourisation.

The conversion is scikit-image's (``skimage.color.rgb2lab`` / ``lab2rgb``): sRGB with its
gamma curve (IEC 61966-2-1), the sRGB primaries to CIE XYZ, the D65 white of the 2-degree
observer, and the CIE 1976 L*a*b* transfer function with CIE 15's linear toe. It runs on any
leading batch dims, eagerly, under ``jit`` and under ``vmap``, in float32 (or the input's
wider float type). The 3x3 colour matrices are applied as elementwise sums, not matmuls, so
no accelerator runs them at reduced (bf16) matmul precision.

References:
  Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016 (Sec. 2.1: 313 in-gamut ab
  bins of grid size 10); CIE 15:2004 (L*a*b*); IEC 61966-2-1:1999 (sRGB).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

XYZ_FROM_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
"""Linear sRGB to CIE XYZ (sRGB primaries, D65), the matrix scikit-image uses."""
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
"""CIE XYZ to linear sRGB, the inverse of :data:`XYZ_FROM_RGB`."""
D65_WHITE = np.array([0.95047, 1.0, 1.08883])
"""CIE XYZ of the D65 reference white, 2-degree observer (Y = 1)."""

_F_EPS = 0.008856  # (6/29)^3: below it f(t) is the linear toe (CIE 15, as scikit-image)
_F_SLOPE = 7.787  # slope of the toe, 1/3 (29/6)^2
_F_OFFSET = 16.0 / 116.0
_F_INV_EPS = 0.2068966  # 6/29 = f(_F_EPS), where the inverse switches branch
_GAMMA_EPS = 0.04045  # sRGB decoding: linear segment below this value
_GAMMA_INV_EPS = 0.0031308  # sRGB encoding: linear segment below this value

NUM_AB_BINS = 313
"""Number of quantised ab bins of Zhang et al. (grid size 10), what :func:`ab_bins` returns."""
AB_BIN_MARGIN = 6.1
"""Default ``margin`` of :func:`ab_bins`: the dilation that gives the paper's 313 bins."""


def _check_channels(x: jax.Array | np.ndarray, name: str) -> None:
    if np.ndim(x) < 1 or np.shape(x)[-1] != 3:
        raise ValueError(f"{name} must have 3 channels on the last axis, got shape {np.shape(x)}")


def _mix(x, matrix: np.ndarray, xp):
    """``x @ matrix.T`` over the last axis as a sum of products (full float precision)."""
    m = xp.asarray(matrix, x.dtype)
    return xp.sum(x[..., None, :] * m, axis=-1)


def _rgb_to_lab(rgb, xp):
    """The conversion, written once for ``numpy`` and ``jax.numpy`` (``xp``)."""
    # Both branches are evaluated by ``where``: clamp each branch's input to its own domain so
    # the unused branch never produces NaN/inf values or gradients.
    high = ((xp.maximum(rgb, _GAMMA_EPS) + 0.055) / 1.055) ** 2.4
    linear = xp.where(rgb > _GAMMA_EPS, high, rgb / 12.92)
    t = _mix(linear, XYZ_FROM_RGB / D65_WHITE[:, None], xp)
    f = xp.where(t > _F_EPS, xp.cbrt(xp.maximum(t, _F_EPS)), _F_SLOPE * t + _F_OFFSET)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return xp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def rgb_to_lab(rgb: jax.Array) -> jax.Array:
    """CIE L*a*b* (D65, 2-degree observer) of sRGB colours, as ``skimage.color.rgb2lab``.

    Args:
      rgb: float ``[..., 3]`` gamma-encoded sRGB in [0, 1] (values outside are converted by
        the same formulas, not clipped).

    Returns:
      ``[..., 3]``: L* in [0, 100], a* and b* (roughly [-86, 98] and [-108, 95] for sRGB),
      in the input's float type (at least float32).
    """
    _check_channels(rgb, "rgb")
    x = jnp.asarray(rgb)
    x = x.astype(jnp.result_type(jnp.float32, x.dtype))
    return _rgb_to_lab(x, jnp)


def lab_to_rgb(lab: jax.Array) -> jax.Array:
    """sRGB of CIE L*a*b* colours, clipped to [0, 1], as ``skimage.color.lab2rgb``.

    Out-of-gamut colours are handled as scikit-image does: a negative ``f(Z)`` is set to 0
    before the inverse transfer function, and the final sRGB values are clipped to [0, 1].

    Args:
      lab: float ``[..., 3]`` with L* in [0, 100].

    Returns:
      ``[..., 3]`` gamma-encoded sRGB in [0, 1], float32 (or the input's wider float type).
    """
    _check_channels(lab, "lab")
    x = jnp.asarray(lab)
    x = x.astype(jnp.result_type(jnp.float32, x.dtype))
    fy = (x[..., 0] + 16.0) / 116.0
    fx = x[..., 1] / 500.0 + fy
    fz = jnp.maximum(fy - x[..., 2] / 200.0, 0.0)
    f = jnp.stack([fx, fy, fz], axis=-1)
    t = jnp.where(f > _F_INV_EPS, f**3, (f - _F_OFFSET) / _F_SLOPE)
    linear = _mix(t, RGB_FROM_XYZ * D65_WHITE[None, :], jnp)
    high = 1.055 * jnp.maximum(linear, _GAMMA_INV_EPS) ** (1 / 2.4) - 0.055
    return jnp.clip(jnp.where(linear > _GAMMA_INV_EPS, high, 12.92 * linear), 0.0, 1.0)


def _rgb_cube_surface() -> np.ndarray:
    """Every 8-bit sRGB colour on the faces of the RGB cube, ``[6 * 256^2, 3]`` in [0, 1]."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    u, v = (g.ravel() for g in np.meshgrid(levels, levels, indexing="ij"))
    faces = []
    for axis in range(3):
        others = [i for i in range(3) if i != axis]
        for value in (0.0, 1.0):
            face = np.empty((u.size, 3))
            face[:, axis] = value
            face[:, others[0]], face[:, others[1]] = u, v
            faces.append(face)
    return np.concatenate(faces)


@functools.cache
def _ab_bins(grid_size: float, margin: float) -> tuple[tuple[float, float], ...]:
    ab = _rgb_to_lab(_rgb_cube_surface(), np)[:, 1:]
    reach = grid_size / 2 + margin
    nearest = np.round(ab / grid_size).astype(np.int64)
    # A centre within ``reach`` is at most ``reach / grid_size + 1/2`` grid steps away.
    span = int(np.floor(reach / grid_size + 0.5))
    low = nearest.min(axis=0) - span
    hit = np.zeros(tuple(nearest.max(axis=0) + span - low + 1), bool)
    for da in range(-span, span + 1):
        for db in range(-span, span + 1):
            index = nearest + np.array([da, db])
            close = np.max(np.abs(ab - index * grid_size), axis=1) <= reach
            hit[tuple((index[close] - low).T)] = True
    centres = (np.argwhere(hit) + low) * grid_size  # argwhere: sorted by a, then b
    return tuple(map(tuple, centres.tolist()))


def ab_bins(*, grid_size: float = 10.0, margin: float = AB_BIN_MARGIN) -> np.ndarray:
    """Centres of the quantised ab bins that the sRGB gamut reaches (the colourisation classes).

    Bin centres lie on the grid ``grid_size * Z^2``; bin ``c`` is the square of side
    ``grid_size`` around it. A bin is kept when that square, grown by ``margin`` on every
    side, holds the a*b* of some 8-bit sRGB colour: when some colour's L-infinity distance
    to ``c`` is at most ``grid_size / 2 + margin``. The sRGB colours are enumerated on the
    six faces of the RGB cube only (393,216 colours): every a*b* of the solid is also the
    a*b* of a face colour (follow L* at fixed a*b* to where it leaves the gamut), so this is
    the gamut's full a*b* projection. The result is computed once per argument pair and
    cached; no file is shipped.

    ``margin=0`` gives the 261 bins whose squares the 8-bit gamut itself touches. Zhang et
    al.'s list (``pts_in_hull.npy``, "313 ab pairs in gamut") is larger: it also holds a
    ring of bins just outside the sRGB gamut and cannot be reproduced from sRGB/D65
    exactly (e.g. it contains (100, 0), whose nearest sRGB colour is 13 away in L-infinity). The
    default ``margin`` of 6.1 grows the bins until the count is the paper's 313, with the
    paper's extents (a in [-90, 100], b in [-110, 100]); any margin from 6.05 to 6.24 gives
    the same 313 bins. The extra bins only receive soft-encoded mass from colours near the
    gamut's edge.

    Args:
      grid_size: side of a bin in a*b* units (10 in the paper).
      margin: how far beyond its square a bin may reach for a colour, in a*b* units (>= 0).

    Returns:
      ``[Q, 2]`` float32 centres ``(a, b)``, sorted by a then b (Q = 313 by default).

    References:
      Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016 (Sec. 2.1, Fig. 3a).
    """
    if not grid_size > 0:
        raise ValueError(f"grid_size must be positive, got {grid_size}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    return np.asarray(_ab_bins(float(grid_size), float(margin)), np.float32)


__all__ = [
    "AB_BIN_MARGIN",
    "D65_WHITE",
    "NUM_AB_BINS",
    "RGB_FROM_XYZ",
    "XYZ_FROM_RGB",
    "ab_bins",
    "lab_to_rgb",
    "rgb_to_lab",
]
