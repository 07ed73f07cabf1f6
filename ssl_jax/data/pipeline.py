"""tf.data host pipelines: a repeating shuffled training stream and an exact evaluation pass.

Each process reads a disjoint, near-equal part of the split (``tfds.split_for_jax_process``)
and yields its share of the global batch as numpy: ``{'image': uint8 [B_local, H, W, 3],
'label': int32 [B_local]}``. Training: per-epoch shuffle seeded by ``(seed, epoch)`` so the
stream is a pure function of the seed, batches run across epoch boundaries (nothing is
dropped) and ``start_step`` resumes at exactly the batch an uninterrupted run would give.
Evaluation: one pass, the last batches padded (label -1) with a boolean ``mask``, and the
same number of batches on every process, so counts are exact and collectives line up.

Images are decoded on the host; when the stored size differs from ``image_size`` the
shorter side is resized (bilinear, antialiased) and the centre cropped. With ``host_crops``
the training stream instead carries random resized crops (``ssl_jax.data.host_crop``)
under ``'views'``.
"""

import math
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ssl_jax.data import host_crop
from ssl_jax.data.source import DataSource

DEFAULT_SHUFFLE_BUFFER = 50_000


def local_split(source: DataSource, split: str, *, process_index: int, process_count: int):
    """This process's part of ``split`` (``tfds.split_for_jax_process``), after checks.

    Args:
      source: the dataset.
      split: a split of ``source`` (ValueError naming the available ones otherwise).
      process_index: this process, ``0 <= process_index < process_count``.
      process_count: number of processes sharing the split.

    Returns:
      A TFDS split expression for this process's disjoint part of ``split``.
    """
    source.check_split(split)
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"need 0 <= process_index < process_count, got {process_index} and {process_count}"
        )
    return tfds.split_for_jax_process(
        split, process_index=process_index, process_count=process_count
    )


def _records(source: DataSource, split) -> tf.data.Dataset:
    """Encoded images and int32 labels (-1 when the dataset has none), in stored order."""
    has_label = "label" in source.builder.info.features
    ds = source.builder.as_dataset(
        split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )
    return ds.map(
        lambda ex: {
            "image": ex["image"],
            "label": tf.cast(ex["label"], tf.int32) if has_label else tf.constant(-1, tf.int32),
        }
    )


def _decoder(source: DataSource, image_size: int, crop_fraction: float):
    """Decode and (when the stored shape is not ``image_size``) resize + centre crop."""
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    fixed = source.image_shape == (image_size, image_size, 3)

    def decode(ex):
        image = tf.io.decode_image(ex["image"], channels=3, expand_animations=False)
        if fixed:
            image = tf.ensure_shape(image, (image_size, image_size, 3))
        else:
            image = resize_center_crop(image, image_size, crop_fraction)
        return {"image": image, "label": ex["label"]}

    return decode


def resize_center_crop(image: tf.Tensor, size: int, crop_fraction: float) -> tf.Tensor:
    """The evaluation resize: shorter side to ``ceil(size / crop_fraction)``, centre crop.

    Args:
      image: one ``[H, W, 3]`` image (any real dtype; uint8 from the decoders).
      size: side of the output.
      crop_fraction: the crop's share of the resized shorter side (0.875 = ImageNet's 224
        of 256).

    Returns:
      uint8 ``[size, size, 3]`` (bilinear, antialiased, rounded and clipped).
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    target = tf.cast(tf.math.ceil(size / crop_fraction), tf.float32)
    new = tf.cast(tf.math.round(shape * target / tf.reduce_min(shape)), tf.int32)
    new = tf.maximum(new, size)
    image = tf.image.resize(image, new, method="bilinear", antialias=True)
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    image = tf.slice(image, tf.stack([top, left, 0]), [size, size, 3])
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _epoch_seed(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    return (tf.constant(seed % 2**31, tf.int64) * 1_000_003 + epoch) % (2**62)


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    return options


def train_batches(
    source: DataSource,
    *,
    split: str = "train",
    batch_size: int,
    image_size: int,
    seed: int,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    shuffle_buffer: int | None = None,
    skip_corrupt: bool = False,
    host_crops: Sequence[host_crop.CropSpec] | None = None,
    prefetch: int = 2,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless shuffled training batches of this process's share of ``split``.

    Args:
      source: the :class:`DataSource`.
      split: TFDS split expression (``'train'``, ``'unlabelled'``, ``'train[:90%]'``).
      batch_size: this process's batch (global batch / process_count).
      image_size: output side (a no-op when the stored images already have it).
      seed: shuffle seed; the stream is a pure function of it.
      start_step: resume: the first batch is the one an uninterrupted run yields at this
        step.
      process_index: this process, in ``[0, process_count)``.
      process_count: number of processes reading disjoint parts.
      shuffle_buffer: examples in the shuffle buffer (default ``min(local size, 50000)``;
        a full shuffle for CIFAR).
      skip_corrupt: drop examples that fail to decode (breaks exact resume if any do).
      host_crops: random resized crops to make on the host; the batch then holds
        ``'views'`` (a list of uint8 ``[B, size, size, 3]``, one per spec) not ``'image'``.
      prefetch: batches prepared ahead.

    Returns:
      An iterator of ``{'image' | 'views', 'label'}`` numpy dicts.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    sub = local_split(source, split, process_index=process_index, process_count=process_count)
    n = source.num_examples(sub)
    if n == 0:
        raise ValueError(f"process {process_index} of {process_count} has no examples of {split}")
    buffer = min(n, shuffle_buffer or DEFAULT_SHUFFLE_BUFFER)
    records = _records(source, sub)
    epoch0, offset = divmod(start_step * batch_size, n)
    ds = (
        tf.data.Dataset.range(epoch0, 2**62)
        .flat_map(
            lambda e: records.shuffle(
                buffer, seed=_epoch_seed(seed, e), reshuffle_each_iteration=False
            )
        )
        .skip(offset)
    )
    if host_crops:
        specs = list(host_crops)
        ds = ds.enumerate(start=start_step * batch_size).map(
            lambda i, ex: {
                "views": host_crop.crop_views(ex["image"], i, specs=specs, seed=seed),
                "label": ex["label"],
            },
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(_decoder(source, image_size, 1.0), num_parallel_calls=tf.data.AUTOTUNE)
    if skip_corrupt:
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(prefetch).with_options(_options())
    return _numpy(ds)


def _numpy(ds: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
    for batch in ds.as_numpy_iterator():
        if "views" in batch:
            batch["views"] = list(batch["views"])
        yield batch


def num_eval_batches(
    source: DataSource, *, split: str, batch_size: int, process_count: int = 1
) -> int:
    """Batches every process yields in :func:`eval_batches`: ``ceil(ceil(N / P) / B)``.

    Args:
      source: the dataset.
      split: the evaluation split (``N`` examples).
      batch_size: ``B``, examples per batch and process.
      process_count: ``P``.

    Returns:
      The number of batches (the last ones padded to ``B`` rows).
    """
    n = source.num_examples(split)
    return math.ceil(math.ceil(n / process_count) / batch_size)


def eval_batches(
    source: DataSource,
    *,
    split: str = "test",
    batch_size: int,
    image_size: int,
    process_index: int = 0,
    process_count: int = 1,
    crop_fraction: float = 0.875,
    skip_corrupt: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """One ordered pass over this process's share of ``split``, padded to full batches.

    Args:
      source: the :class:`DataSource`.
      split: TFDS split expression.
      batch_size: this process's batch.
      image_size: output side.
      process_index: this process, in ``[0, process_count)``.
      process_count: number of processes.
      crop_fraction: when images need resizing, the shorter side goes to
        ``image_size / crop_fraction`` before the centre crop (0.875: 256 -> 224).
      skip_corrupt: drop examples that fail to decode (then they are not counted).

    Returns:
      :func:`num_eval_batches` dicts ``{'image', 'label', 'mask'}``; padded rows have
      zero images, label -1 and mask False.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    sub = local_split(source, split, process_index=process_index, process_count=process_count)
    steps = num_eval_batches(
        source, split=split, batch_size=batch_size, process_count=process_count
    )
    ds = _records(source, sub).map(
        _decoder(source, image_size, crop_fraction), num_parallel_calls=tf.data.AUTOTUNE
    )
    if skip_corrupt:
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size).prefetch(2).with_options(_options())
    return _padded(ds.as_numpy_iterator(), steps, batch_size, image_size)


def _padded(batches, steps: int, batch_size: int, image_size: int):
    empty = {
        "image": np.zeros((0, image_size, image_size, 3), np.uint8),
        "label": np.zeros((0,), np.int32),
    }
    for _ in range(steps):
        batch = next(batches, empty)
        n = len(batch["label"])
        pad = batch_size - n
        yield {
            "image": np.concatenate(
                [batch["image"], np.zeros((pad, image_size, image_size, 3), np.uint8)]
            ),
            "label": np.concatenate([batch["label"], np.full((pad,), -1, np.int32)]),
            "mask": np.arange(batch_size) < n,
        }
