"""Pretext-task objectives: rotation prediction, patch-position / jigsaw classification and
colourisation as multinomial classification over quantised ab bins.

Batch means take ``axis_name`` (see ``_distributed``): None when the arrays are the global
batch; the mapped axis name inside ``shard_map``/``pmap``, where each device returns the
global mean and the gradient of that global mean with respect to its own rows.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ssl_jax.losses import _validate
from ssl_jax.losses._distributed import compute_dtype, global_sum, num_devices

NUM_ROTATIONS = 4


def rotate_images(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Every image at 0, 90, 180 and 270 degrees (counter-clockwise), with the labels 0..3.

    The four rotations of an image are adjacent (``rotated[4 i + k]`` is image ``i`` turned
    by ``k * 90`` degrees), as in RotNet's data loader, so they stay on one device when the
    batch is sharded.

    Args:
      images: ``[B, H, W, C]`` with ``H == W`` (a quarter turn must keep the shape).

    Returns:
      ``(rotated [4B, H, W, C], labels [4B] int32)``.

    References:
      Gidaris, Singh & Komodakis, "Unsupervised Representation Learning by Predicting Image
      Rotations", ICLR 2018 (Sec. 2.2).
    """
    _validate.check_rank(images, 4, "images")
    b, h, w, c = images.shape
    if h != w:
        raise ValueError(f"rotate_images needs square images, got H={h}, W={w}")
    turned = [jnp.rot90(images, k, axes=(1, 2)) for k in range(NUM_ROTATIONS)]
    rotated = jnp.stack(turned, axis=1).reshape(b * NUM_ROTATIONS, h, w, c)
    labels = jnp.tile(jnp.arange(NUM_ROTATIONS, dtype=jnp.int32), b)
    return rotated, labels


def _check_labels(logits: jax.Array, labels: jax.Array) -> None:
    _validate.check_rank(logits, 2, "logits")
    _validate.check_rank(labels, 1, "labels")
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must have one entry per row of logits ({logits.shape[0]}), "
            f"got shape {labels.shape}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    _validate.check_min_batch(logits, 1, "logits")
    num_classes = logits.shape[1]
    if num_classes < 2:
        raise ValueError(f"logits need at least 2 classes, got shape {logits.shape}")
    if not isinstance(labels, jax.core.Tracer):
        values = np.asarray(labels)
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"labels must be in [0, {num_classes}), got values in "
                f"[{values.min()}, {values.max()}]"
            )


def classification_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    label_smoothing: float = 0.0,
    axis_name: str | None = None,
) -> jax.Array:
    """Softmax cross entropy for pretext classification tasks, batch mean.

    Used for relative patch position (8 classes, Doersch et al.), jigsaw puzzles (one class
    per permutation of the chosen set, Noroozi & Favaro) and rotation (4 classes).

    Labels are checked against ``[0, K)`` when they are concrete. Under ``jax.jit`` they
    cannot be inspected, so a row with an out-of-range label gets a NaN loss: the train loop
    stops on it instead of silently training on a wrong target.

    Args:
      logits: ``[B, K]`` unnormalised scores (per-device rows when ``axis_name`` is set).
      labels: ``[B]`` integer classes.
      label_smoothing: alpha in ``[0, 1]``; the target is ``(1 - alpha) one_hot + alpha / K``.
      axis_name: mapped axis of ``shard_map``/``pmap`` to average over, or None.

    Returns:
      Scalar mean cross entropy over the global batch.

    References:
      Doersch, Gupta & Efros, "Unsupervised Visual Representation Learning by Context
      Prediction", ICCV 2015; Noroozi & Favaro, "Unsupervised Learning of Visual
      Representations by Solving Jigsaw Puzzles", ECCV 2016; Szegedy et al., "Rethinking the
      Inception Architecture", CVPR 2016 (label smoothing).
    """
    _check_labels(logits, labels)
    _validate.check_in_range(label_smoothing, 0.0, 1.0, "label_smoothing")
    dtype = compute_dtype(logits)
    num_classes = logits.shape[1]
    log_probs = jax.nn.log_softmax(logits.astype(dtype), axis=-1)
    targets = jax.nn.one_hot(labels, num_classes, dtype=dtype)
    targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
    per_row = -jnp.sum(targets * log_probs, axis=-1)
    valid = (labels >= 0) & (labels < num_classes)
    per_row = jnp.where(valid, per_row, jnp.nan)
    n = logits.shape[0] * num_devices(axis_name)
    return global_sum(jnp.sum(per_row) / n, axis_name)


def rotation_loss(
    logits: jax.Array, labels: jax.Array, *, axis_name: str | None = None
) -> tuple[jax.Array, jax.Array]:
    """RotNet's 4-way rotation classification loss and accuracy.

    Args:
      logits: ``[B, 4]`` scores for 0/90/180/270 degrees (e.g. of :func:`rotate_images`'s
        output).
      labels: ``[B]`` rotation indices in ``0..3``.
      axis_name: mapped axis of ``shard_map``/``pmap`` to average over, or None.

    Returns:
      ``(loss, accuracy)``: mean cross entropy and the fraction of rows whose argmax is the
      label (no gradient), both over the global batch.

    References:
      Gidaris, Singh & Komodakis, "Unsupervised Representation Learning by Predicting Image
      Rotations", ICLR 2018 (Eq. 1-3).
    """
    _validate.check_rank(logits, 2, "logits")
    if logits.shape[1] != NUM_ROTATIONS:
        raise ValueError(f"rotation logits must have {NUM_ROTATIONS} columns, got {logits.shape}")
    loss = classification_loss(logits, labels, axis_name=axis_name)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    n = logits.shape[0] * num_devices(axis_name)
    accuracy = global_sum(jnp.sum(correct) / n, axis_name)
    return loss, accuracy


def soft_encode_ab(
    ab: jax.Array,
    bins: jax.Array,
    *,
    num_neighbors: int = 5,
    sigma: float = 5.0,
) -> jax.Array:
    """Soft-encodes ab colour values over quantised bins (the colourisation target ``Z``).

    Each value spreads over its ``num_neighbors`` nearest bin centres with Gaussian weights
    ``exp(-d^2 / (2 sigma^2))`` normalised to sum 1; all other bins get 0.

    Args:
      ab: ``[..., 2]`` ab values (CIE Lab, roughly in ``[-110, 110]``).
      bins: ``[Q, 2]`` bin centres (the paper's 313 in-gamut bins of a grid of size 10).
      num_neighbors: bins per value (5).
      sigma: Gaussian kernel width in ab units (5).

    Returns:
      ``[..., Q]`` distributions.

    References:
      Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016 (Sec. 2.1).
    """
    _validate.check_rank(bins, 2, "bins")
    if bins.shape[1] != 2 or np.shape(ab)[-1:] != (2,):
        raise ValueError(f"ab [..., 2] and bins [Q, 2] expected, got {ab.shape} and {bins.shape}")
    if not 1 <= num_neighbors <= bins.shape[0]:
        raise ValueError(f"num_neighbors must be in [1, {bins.shape[0]}], got {num_neighbors}")
    _validate.check_positive(sigma, "sigma")
    dtype = compute_dtype(ab, bins)
    diff = ab.astype(dtype)[..., None, :] - bins.astype(dtype)
    sq_dist = jnp.sum(jnp.square(diff), axis=-1)
    neg_sq, idx = lax.top_k(-sq_dist, num_neighbors)
    weights = jax.nn.softmax(neg_sq / (2.0 * sigma**2), axis=-1)
    one_hot = jax.nn.one_hot(idx, bins.shape[0], dtype=dtype)
    return jnp.sum(one_hot * weights[..., None], axis=-2)


def colorization_class_weights(
    prior: jax.Array,
    *,
    lambda_: float = 0.5,
    bins: jax.Array | None = None,
    sigma: float = 5.0,
) -> jax.Array:
    """Class-rebalancing weights ``w_q ∝ ((1 - lambda_) p~_q + lambda_ / Q)^-1``.

    Normalised so that ``E_p~[w] = sum_q p~_q w_q = 1``.

    Args:
      prior: ``[Q]`` empirical bin frequencies (counts or probabilities, not all 0).
      lambda_: mixing weight of the uniform distribution (0.5).
      bins: ``[Q, 2]`` bin centres. When given, the prior is first smoothed with a Gaussian
        kernel of width ``sigma`` over the bins, as in the paper; None uses ``prior`` as is
        (pass an already smoothed prior).
      sigma: smoothing kernel width in ab units (5).

    Returns:
      ``[Q]`` weights.

    References:
      Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016 (Eq. 3, 4).
    """
    _validate.check_rank(prior, 1, "prior")
    _validate.check_in_range(lambda_, 0.0, 1.0, "lambda_")
    if not isinstance(prior, jax.core.Tracer):
        values = np.asarray(prior)
        if values.min() < 0 or values.sum() <= 0:
            raise ValueError("prior must be non-negative with a positive sum")
    num_bins = prior.shape[0]
    p = prior.astype(compute_dtype(prior))
    if bins is not None:
        if bins.shape != (num_bins, 2):
            raise ValueError(f"bins must have shape ({num_bins}, 2), got {bins.shape}")
        _validate.check_positive(sigma, "sigma")
        centres = bins.astype(p.dtype)
        sq_dist = jnp.sum(jnp.square(centres[:, None, :] - centres[None, :, :]), axis=-1)
        p = jnp.exp(-sq_dist / (2.0 * sigma**2)) @ p
    p = p / jnp.sum(p)
    w = 1.0 / ((1.0 - lambda_) * p + lambda_ / num_bins)
    return w / jnp.sum(p * w)


def colorization_loss(
    logits: jax.Array,
    target_dist: jax.Array,
    *,
    class_weights: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    """Zhang et al.'s class-rebalanced multinomial cross entropy over ab bins.

    Per pixel: ``-v(Z) sum_q Z_q log softmax(logits)_q``, with ``v(Z) = w[argmax_q Z_q]``
    (the weight of the target's most likely bin) or 1 without ``class_weights``. The paper
    sums over pixels (Eq. 2); this returns the mean over pixels and images so the scale does
    not depend on the resolution or batch size.

    Args:
      logits: ``[B, H, W, Q]`` unnormalised bin scores (per-device rows with ``axis_name``).
      target_dist: ``[B, H, W, Q]`` soft-encoded targets (:func:`soft_encode_ab`); treated as
        data.
      class_weights: ``[Q]`` rebalancing weights (:func:`colorization_class_weights`) or None.
      axis_name: mapped axis of ``shard_map``/``pmap`` to average over, or None.

    Returns:
      Scalar mean weighted cross entropy over all pixels of the global batch.

    References:
      Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016 (Eq. 2-4).
    """
    _validate.check_rank(logits, 4, "logits")
    _validate.check_same_shape(logits, target_dist, ("logits", "target_dist"))
    num_bins = logits.shape[-1]
    if class_weights is not None and np.shape(class_weights) != (num_bins,):
        raise ValueError(
            f"class_weights must have shape ({num_bins},), got {np.shape(class_weights)}"
        )
    dtype = compute_dtype(logits, target_dist)
    # The soft-encoded target and the weights are data, never differentiated.
    target = lax.stop_gradient(target_dist.astype(dtype))
    log_probs = jax.nn.log_softmax(logits.astype(dtype), axis=-1)
    per_pixel = -jnp.sum(target * log_probs, axis=-1)
    if class_weights is not None:
        w = lax.stop_gradient(jnp.asarray(class_weights, dtype))
        per_pixel = per_pixel * w[jnp.argmax(target, axis=-1)]
    n = per_pixel.size * num_devices(axis_name)
    return global_sum(jnp.sum(per_pixel) / n, axis_name)
