"""Host-side (tf.data) geometric crops for large images: decode only the crop window.

For 224-px ImageNet-style data the random resized crops are cheapest on the host: the crop
box comes from ``tf.image.stateless_sample_distorted_bounding_box`` and JPEGs are decoded
with ``tf.io.decode_and_crop_jpeg`` (only the window is decoded), other formats are decoded
whole and sliced. The device then runs only the flip and photometric half of the recipe
(``ssl_jax.augment.photometric_views``). Every random draw is keyed by ``(seed, example
position, view)``, so the crops are the same whatever the tf.data parallelism.

References: Szegedy et al. 2015 (Inception crop); Chen et al. 2020 (SimCLR) TF code,
``distorted_bounding_box_crop``.
"""

import dataclasses

import tensorflow as tf

from ssl_jax import augment


@dataclasses.dataclass(frozen=True)
class CropSpec:
    """One host crop: output side, area fraction range, aspect-ratio range.

    Attributes:
      size: side of the square output crop in pixels.
      scale: ``RandomResizedCrop`` area fraction range.
      ratio: aspect-ratio (width / height) range.
    """

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)


def crop_specs(
    recipe: str | augment.ViewRecipe,
    *,
    image_size: int | None = None,
    num_local_crops: int | None = None,
    local_size: int | None = None,
) -> list[CropSpec]:
    """The host crops of a view recipe (globals first), with ``make_views``'s overrides.

    Args:
      recipe: a name in ``ssl_jax.augment.RECIPES`` or a ``ViewRecipe``.
      image_size: global view side; default the recipe's.
      num_local_crops: number of local views; default the recipe's.
      local_size: local view side; default the recipe's.

    Returns:
      One :class:`CropSpec` per view, in view order.
    """
    views = augment.view_sizes(
        recipe, image_size=image_size, num_local_crops=num_local_crops, local_size=local_size
    )
    return [CropSpec(size, spec.scale, spec.ratio) for spec, size in views]


def _resize_uint8(image: tf.Tensor, size: int) -> tf.Tensor:
    out = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def _box(shape: tf.Tensor, spec: CropSpec, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=spec.ratio,
        area_range=spec.scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return begin, size


def crop_views(
    encoded: tf.Tensor, position: tf.Tensor, *, specs: list[CropSpec], seed: int
) -> tuple[tf.Tensor, ...]:
    """Random resized crops of one encoded image, one uint8 ``[size, size, 3]`` per spec.

    Args:
      encoded: scalar string tensor, JPEG/PNG/... bytes.
      position: int64 scalar, the example's position in the stream (seeds the draws).
      specs: the crops to make.
      seed: run seed.

    Returns:
      A tuple of uint8 tensors, one per spec.
    """
    if not specs:
        raise ValueError("crop_views needs at least one CropSpec")
    position = tf.cast(position, tf.int64)

    def seeds(v: int) -> tf.Tensor:
        return tf.stack([tf.constant(seed, tf.int64), position * len(specs) + v])

    def from_jpeg():
        shape = tf.image.extract_jpeg_shape(encoded)
        out = []
        for v, spec in enumerate(specs):
            begin, size = _box(shape, spec, seeds(v))
            window = tf.stack([begin[0], begin[1], size[0], size[1]])
            out.append(
                _resize_uint8(tf.io.decode_and_crop_jpeg(encoded, window, channels=3), spec.size)
            )
        return tuple(out)

    def from_other():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        shape = tf.shape(image)
        out = []
        for v, spec in enumerate(specs):
            begin, size = _box(shape, spec, seeds(v))
            out.append(_resize_uint8(tf.slice(image, begin, size), spec.size))
        return tuple(out)

    return tf.cond(tf.io.is_jpeg(encoded), from_jpeg, from_other)
