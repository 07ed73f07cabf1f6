"""DINO: self-distillation cross entropy between teacher and student crops, and centering.

The teacher-temperature warm-up schedule belongs to the method; here the temperature is a
plain (possibly traced) number.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax.losses import _validate
from ssl_jax.losses._distributed import compute_dtype, global_sum, num_devices


def _check_crops(crops: Sequence[jax.Array], name: str, *, allow_array: bool) -> list[jax.Array]:
    if hasattr(crops, "shape"):
        if not allow_array:
            raise ValueError(f"{name} must be a list of [B, K] arrays, one per crop")
        crops = [crops]
    crops = list(crops)
    if not crops:
        raise ValueError(f"{name} must hold at least one crop")
    for i, x in enumerate(crops):
        _validate.check_rank(x, 2, f"{name}[{i}]")
        _validate.check_same_shape(crops[0], x, (f"{name}[0]", f"{name}[{i}]"))
    _validate.check_min_batch(crops[0], 1, f"{name}[0]")
    return crops


def dino_loss(
    student_out: Sequence[jax.Array],
    teacher_out: Sequence[jax.Array],
    center: jax.Array,
    *,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
    axis_name: str | None = None,
) -> jax.Array:
    """Cross entropy from the centred, sharpened teacher to the student, over crop pairs.

    Teacher targets ``softmax((t - center) / teacher_temp)`` for each teacher (global) crop
    are predicted by ``log_softmax(s / student_temp)`` of every student crop except the one
    of the same view; as in the official code each pair's cross entropy is a batch mean and
    the loss is the mean over pairs. Student crop i < ``len(teacher_out)`` must be the same
    view as teacher crop i.

    Args:
      student_out: ``[B, K]`` per crop: the global crops first, then the local crops.
      teacher_out: ``[B, K]`` per global crop (usually 2).
      center: ``[K]`` running mean of teacher outputs (see :func:`dino_center_update`).
      student_temp: student softmax temperature, > 0.
      teacher_temp: teacher softmax temperature, > 0 (0.04 after the warm-up).
      axis_name: set inside ``shard_map``/``pmap`` so the value is the global-batch mean and
        gradients follow the contract of ``_distributed``.

    Returns:
      Scalar: mean over (teacher crop, other student crop) pairs.

    References:
      Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021
      (Eq. 2-3, Alg. 1; ``DINOLoss`` in ``main_dino.py`` of facebookresearch/dino).
    """
    student_out = _check_crops(student_out, "student_out", allow_array=False)
    teacher_out = _check_crops(teacher_out, "teacher_out", allow_array=False)
    _validate.check_same_shape(student_out[0], teacher_out[0], ("student_out[0]", "teacher_out[0]"))
    _validate.check_rank(center, 1, "center")
    if center.shape[0] != teacher_out[0].shape[1]:
        raise ValueError(f"center must have shape ({teacher_out[0].shape[1]},), got {center.shape}")
    if len(teacher_out) > len(student_out):
        raise ValueError(
            f"teacher_out has {len(teacher_out)} crops but student_out only "
            f"{len(student_out)}; the teacher's crops must be the student's first ones"
        )
    if len(student_out) < 2:
        raise ValueError("dino_loss needs at least 2 student crops (no pair otherwise)")
    _validate.check_positive(student_temp, "student_temp")
    _validate.check_positive(teacher_temp, "teacher_temp")

    dtype = compute_dtype(*student_out, *teacher_out, center)
    batch = student_out[0].shape[0] * num_devices(axis_name)
    # stop_gradient: the teacher is an EMA of the student and the center a running mean;
    # neither is trained by this loss, the targets are constants.
    center = lax.stop_gradient(center.astype(dtype))
    targets = [
        lax.stop_gradient(jax.nn.softmax((t.astype(dtype) - center) / teacher_temp, axis=1))
        for t in teacher_out
    ]
    log_p = [jax.nn.log_softmax(s.astype(dtype) / student_temp, axis=1) for s in student_out]
    terms = [
        -jnp.sum(q * log_p[v]) / batch
        for iq, q in enumerate(targets)
        for v in range(len(log_p))
        if v != iq
    ]
    return global_sum(sum(terms) / len(terms), axis_name)


def dino_center_update(
    center: jax.Array,
    teacher_out: Sequence[jax.Array] | jax.Array,
    *,
    momentum: float = 0.9,
    axis_name: str | None = None,
) -> jax.Array:
    """EMA of the teacher's mean output: ``m * center + (1 - m) * mean(teacher_out)``.

    The mean is over every row of every teacher crop of the global batch (``psum``'ed
    across ``axis_name`` inside ``shard_map``/``pmap``).

    Args:
      center: ``[K]`` current center.
      teacher_out: ``[B, K]`` per teacher crop, or one ``[M, K]`` array.
      momentum: center momentum in [0, 1].
      axis_name: mapped axis whose devices hold the rest of the batch, or None.

    Returns:
      ``[K]`` new center, dtype of ``center``, with no gradient.

    References:
      Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021
      (Eq. 4; ``DINOLoss.update_center``).
    """
    teacher_out = _check_crops(teacher_out, "teacher_out", allow_array=True)
    _validate.check_rank(center, 1, "center")
    if center.shape[0] != teacher_out[0].shape[1]:
        raise ValueError(f"center must have shape ({teacher_out[0].shape[1]},), got {center.shape}")
    _validate.check_in_range(momentum, 0.0, 1.0, "momentum")
    dtype = compute_dtype(center, *teacher_out)
    # stop_gradient: the center is a running statistic, not a function to differentiate.
    rows = lax.stop_gradient(jnp.concatenate([t.astype(dtype) for t in teacher_out], axis=0))
    total = jnp.sum(rows, axis=0)
    if axis_name is not None:
        total = lax.psum(total, axis_name)
    batch_center = total / (rows.shape[0] * num_devices(axis_name))
    new = momentum * center.astype(dtype) + (1.0 - momentum) * batch_center
    return new.astype(center.dtype)
