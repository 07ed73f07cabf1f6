"""Separable Gaussian blur with a per-image sigma (SimCLR/BYOL recipes).

The kernel spans about 10% of the image side (radius ``side // 20``, so 23 taps at 224 px
as in torchvision's ``GaussianBlur(23)``), borders are mirrored without repeating the edge
pixel (torchvision's ``reflect`` padding), and sigma may be a traced per-image value.

References: Chen et al. 2020 (SimCLR), Appendix A ("Gaussian blur ... kernel size is 10% of
the image height/width, sigma uniform in [0.1, 2.0]").
"""

import jax
import jax.numpy as jnp


def blur_radius(side: int) -> int:
    """Kernel radius for an image side: ``max(1, side // 20)`` (kernel ~10% of the side).

    Args:
      side: image height or width in pixels.

    Returns:
      The radius ``r`` of the ``2r + 1``-tap kernel.
    """
    return max(1, side // 20)


def gaussian_kernel1d(sigma: jax.Array | float, radius: int) -> jax.Array:
    """Normalised 1-D Gaussian taps at offsets ``-radius..radius``.

    Args:
      sigma: standard deviation in pixels (> 0), may be traced.
      radius: static half width.

    Returns:
      float32 ``[2 * radius + 1]`` summing to 1.
    """
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * jnp.square(x / sigma))
    return w / jnp.sum(w)


def _blur_axis(image: jax.Array, taps: jax.Array, axis: int) -> jax.Array:
    radius = (taps.shape[0] - 1) // 2
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(image, pad, mode="reflect")
    n = image.shape[axis]
    out = jnp.zeros_like(image)
    for t in range(taps.shape[0]):
        out = out + taps[t] * jax.lax.slice_in_dim(padded, t, t + n, axis=axis)
    return out


def gaussian_blur(
    image: jax.Array, sigma: jax.Array | float, *, radius: int | None = None
) -> jax.Array:
    """Blurs one image with an isotropic Gaussian, separably (rows then columns).

    Args:
      image: float ``[H, W, C]``.
      sigma: standard deviation in pixels (> 0), may be traced.
      radius: static kernel half width; default :func:`blur_radius` of ``min(H, W)``.

    Returns:
      float ``[H, W, C]``.
    """
    if image.ndim != 3:
        raise ValueError(f"expected one image [H, W, C], got shape {image.shape}; vmap it")
    if radius is None:
        radius = blur_radius(min(image.shape[0], image.shape[1]))
    if radius < 1 or radius >= min(image.shape[0], image.shape[1]):
        raise ValueError(f"radius must be in [1, min(H, W) - 1], got {radius} for {image.shape}")
    if not isinstance(sigma, jax.core.Tracer) and float(sigma) <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    taps = gaussian_kernel1d(sigma, radius).astype(image.dtype)
    return _blur_axis(_blur_axis(image, taps, 0), taps, 1)


def random_gaussian_blur(
    key: jax.Array,
    image: jax.Array,
    *,
    prob: float,
    sigma: tuple[float, float] = (0.1, 2.0),
    radius: int | None = None,
) -> jax.Array:
    """:func:`gaussian_blur` with probability ``prob`` and sigma ~ U(sigma).

    Args:
      key: PRNG key.
      image: float ``[H, W, C]``.
      prob: application probability (SimCLR 0.5; BYOL 1.0 / 0.1 for its two views).
      sigma: ``(min, max)`` standard deviation in pixels, ``0 < min <= max``.
      radius: see :func:`gaussian_blur`.

    Returns:
      float ``[H, W, C]``.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"blur probability must be in [0, 1], got {prob}")
    if not 0.0 < sigma[0] <= sigma[1]:
        raise ValueError(f"sigma range must satisfy 0 < min <= max, got {sigma}")
    if prob == 0.0:
        return image
    k_apply, k_sigma = jax.random.split(key)
    s = jax.random.uniform(k_sigma, minval=sigma[0], maxval=sigma[1])
    blurred = gaussian_blur(image, s, radius=radius)
    if prob == 1.0:
        return blurred
    return jnp.where(jax.random.uniform(k_apply) < prob, blurred, image)
