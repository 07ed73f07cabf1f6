"""Geometric image ops: crop-and-resize, random resized crop, horizontal flip.

Pure ``jnp`` functions of one float image ``[H, W, C]``; batch them with ``jax.vmap``
(per-image keys and boxes). Crop boxes are integer pixel boxes ``(top, left, height,
width)`` drawn as torchvision's ``RandomResizedCrop`` draws them; the resize is a bilinear
``jax.image.scale_and_translate``, with antialiasing when shrinking (as PIL and
torchvision >= 0.17 do).

References: Szegedy et al. 2015, "Going Deeper with Convolutions" (Inception crop);
Chen et al. 2020 (SimCLR), Appendix A.
"""

import math

import jax
import jax.numpy as jnp


def _check_image(image: jax.Array) -> None:
    if image.ndim != 3:
        raise ValueError(
            f"expected one image [H, W, C], got shape {image.shape}; vmap over the batch"
        )


def _check_range(values: tuple[float, float], name: str, low: float, high: float) -> None:
    lo, hi = values
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name} must satisfy {low} <= min <= max <= {high}, got {values}")


def crop_and_resize(
    image: jax.Array,
    box: jax.Array,
    size: tuple[int, int],
    *,
    antialias: bool = True,
) -> jax.Array:
    """Bilinear resize of the crop ``box`` of ``image`` to ``size``.

    Output pixel ``i`` samples the input at ``top + (i + 0.5) * height / out_h - 0.5`` (pixel
    centres map to pixel centres, the convention of PIL's ``resize(box=...)``).

    Args:
      image: float ``[H, W, C]``.
      box: ``(top, left, height, width)`` in input pixels, float or int, may be traced.
      size: static output ``(out_h, out_w)``.
      antialias: widen the filter when shrinking (area-like); False = plain bilinear.

    Returns:
      float ``[out_h, out_w, C]``.
    """
    _check_image(image)
    box = jnp.asarray(box, jnp.float32)
    out_h, out_w = size
    scale = jnp.stack([out_h / box[2], out_w / box[3]])
    translation = -jnp.stack([box[0], box[1]]) * scale
    return jax.image.scale_and_translate(
        image,
        (out_h, out_w, image.shape[2]),
        spatial_dims=(0, 1),
        scale=scale,
        translation=translation,
        method="linear",
        antialias=antialias,
    )


def resize(image: jax.Array, size: tuple[int, int], *, antialias: bool = True) -> jax.Array:
    """Whole-image bilinear resize to ``size`` (a no-op when the shape already matches).

    Args:
      image: one image ``[H, W, C]``.
      size: static ``(height, width)``.
      antialias: low-pass filter when downsampling, as ``jax.image.scale_and_translate``.

    Returns:
      ``[height, width, C]``.
    """
    _check_image(image)
    if tuple(image.shape[:2]) == tuple(size):
        return image
    box = jnp.asarray([0.0, 0.0, image.shape[0], image.shape[1]])
    return crop_and_resize(image, box, size, antialias=antialias)


def sample_crop_box(
    key: jax.Array,
    height: int,
    width: int,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> jax.Array:
    """Draws a ``RandomResizedCrop`` box the way torchvision does, without Python loops.

    Area fraction ~ U(scale), log aspect ratio ~ U(log ratio); sides are rounded to pixels;
    the first of ``attempts`` draws that fits is used, else the central crop with the
    aspect ratio clamped to ``ratio``. The offset is uniform over the valid positions.

    Args:
      key: PRNG key.
      height: static image height.
      width: static image width.
      scale: area fraction range, ``0 < min <= max <= 1``.
      ratio: width / height range, ``0 < min <= max``.
      attempts: number of vectorised tries.

    Returns:
      int32 ``[4]``: ``(top, left, crop_height, crop_width)``.
    """
    _check_range(scale, "scale", 1e-8, 1.0)
    _check_range(ratio, "ratio", 1e-8, math.inf)
    k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
    area = (
        height * width * jax.random.uniform(k_area, (attempts,), minval=scale[0], maxval=scale[1])
    )
    log_r = jax.random.uniform(
        k_ratio, (attempts,), minval=math.log(ratio[0]), maxval=math.log(ratio[1])
    )
    aspect = jnp.exp(log_r)
    w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = jnp.argmax(ok)

    # Fallback: torchvision's central crop with the aspect ratio clamped into ``ratio``.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fb_w, fb_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fb_h, fb_w = height, round(height * ratio[1])
    else:
        fb_w, fb_h = width, height
    found = ok[first]
    crop_h = jnp.where(found, h[first], fb_h)
    crop_w = jnp.where(found, w[first], fb_w)
    top = jax.random.randint(k_top, (), 0, height - crop_h + 1)
    left = jax.random.randint(k_left, (), 0, width - crop_w + 1)
    top = jnp.where(found, top, (height - fb_h) // 2)
    left = jnp.where(found, left, (width - fb_w) // 2)
    return jnp.stack([top, left, crop_h, crop_w]).astype(jnp.int32)


def random_resized_crop(
    key: jax.Array,
    image: jax.Array,
    size: int | tuple[int, int],
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    antialias: bool = True,
) -> jax.Array:
    """Inception-style random resized crop of one image (torchvision ``RandomResizedCrop``).

    Args:
      key: PRNG key.
      image: float ``[H, W, C]``.
      size: output side, or ``(out_h, out_w)``.
      scale: crop area fraction range.
      ratio: crop aspect-ratio (width / height) range.
      antialias: see :func:`crop_and_resize`.

    Returns:
      float ``[out_h, out_w, C]``.
    """
    _check_image(image)
    size = (size, size) if isinstance(size, int) else tuple(size)
    box = sample_crop_box(key, image.shape[0], image.shape[1], scale=scale, ratio=ratio)
    return crop_and_resize(image, box, size, antialias=antialias)


def flip_left_right(image: jax.Array) -> jax.Array:
    """Mirror along the width axis (``[..., H, W, C]``), as ``tf.image.flip_left_right``.

    Args:
      image: ``[..., H, W, C]``.

    Returns:
      The mirrored image, same shape.
    """
    if image.ndim < 3:
        raise ValueError(f"expected [..., H, W, C], got shape {image.shape}")
    return jnp.flip(image, axis=-2)


def random_flip(key: jax.Array, image: jax.Array, *, prob: float = 0.5) -> jax.Array:
    """:func:`flip_left_right` with probability ``prob`` for one image.

    Args:
      key: PRNG key.
      image: one image ``[H, W, C]``.
      prob: flip probability in [0, 1].

    Returns:
      The image, mirrored or not.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"flip probability must be in [0, 1], got {prob}")
    if prob == 0.0:
        return image
    return jnp.where(jax.random.uniform(key) < prob, flip_left_right(image), image)
