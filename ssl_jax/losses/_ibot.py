"""iBOT's masked image modelling loss: self-distillation of patch tokens at masked positions.

The [CLS] part of iBOT is DINO's loss (``dino_loss``) and both centres follow
``dino_center_update`` (the patch centre over every patch token of every global crop).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax.losses import _validate
from ssl_jax.losses._distributed import compute_dtype, global_sum, num_devices


def _crops(x: Sequence[jax.Array], name: str, rank: int) -> list[jax.Array]:
    if hasattr(x, "shape"):
        raise ValueError(f"{name} must be a list of arrays, one per global crop")
    x = list(x)
    if not x:
        raise ValueError(f"{name} must hold at least one crop")
    for i, a in enumerate(x):
        _validate.check_rank(a, rank, f"{name}[{i}]")
        _validate.check_same_shape(x[0], a, (f"{name}[0]", f"{name}[{i}]"))
    return x


def ibot_patch_loss(
    student_patch: Sequence[jax.Array],
    teacher_patch: Sequence[jax.Array],
    masks: Sequence[jax.Array],
    center: jax.Array,
    *,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
    axis_name: str | None = None,
) -> jax.Array:
    """Cross entropy from the teacher's patch tokens to the student's, on masked patches.

    For every global crop ``v``, the student (which saw ``v`` with the patches of ``masks[v]``
    replaced by the mask token) predicts, at each masked patch, the centred and sharpened
    distribution ``softmax((t - center) / teacher_temp)`` of the teacher's token for the
    same patch of the unmasked crop; the cross entropy is averaged over the image's masked
    patches (0 for an image without any), then over images and crops (Eq. 2 of the paper,
    ``iBOTLoss`` of the official code: images with no masked patch count in the mean).

    Args:
      student_patch: ``[B, N, K]`` student head outputs of every patch token, per global crop.
      teacher_patch: ``[B, N, K]`` teacher head outputs, per global crop (constants).
      masks: ``[B, N]`` per global crop, True / 1 where the student's patch was masked.
      center: ``[K]`` running mean of the teacher's patch outputs.
      student_temp: student temperature, > 0 (0.1).
      teacher_temp: teacher patch temperature, > 0 (0.04 -> 0.07 in the paper).
      axis_name: mapped axis of ``shard_map``/``pmap`` holding the rest of the batch, or None.

    Returns:
      Scalar: the mean over crops and images of the per-image masked-patch cross entropy.

    References:
      Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022 (Eq. 2,
      Alg. 1; ``iBOTLoss`` in bytedance/ibot).
    """
    student_patch = _crops(student_patch, "student_patch", 3)
    teacher_patch = _crops(teacher_patch, "teacher_patch", 3)
    masks = _crops(masks, "masks", 2)
    if not len(student_patch) == len(teacher_patch) == len(masks):
        raise ValueError(
            f"need one student, teacher and mask per global crop, got {len(student_patch)}, "
            f"{len(teacher_patch)} and {len(masks)}"
        )
    _validate.check_same_shape(
        student_patch[0], teacher_patch[0], ("student_patch", "teacher_patch")
    )
    if masks[0].shape != student_patch[0].shape[:2]:
        raise ValueError(
            f"masks must be [B, N] = {student_patch[0].shape[:2]}, got {masks[0].shape}"
        )
    _validate.check_rank(center, 1, "center")
    if center.shape[0] != student_patch[0].shape[-1]:
        raise ValueError(
            f"center must have shape ({student_patch[0].shape[-1]},), got {center.shape}"
        )
    _validate.check_positive(student_temp, "student_temp")
    _validate.check_positive(teacher_temp, "teacher_temp")

    dtype = compute_dtype(*student_patch, *teacher_patch, center)
    batch = student_patch[0].shape[0] * num_devices(axis_name)
    # stop_gradient: the teacher is an EMA of the student and the center a running mean;
    # both are targets, not functions to train.
    center = lax.stop_gradient(center.astype(dtype))
    total = 0.0
    for s, t, m in zip(student_patch, teacher_patch, masks, strict=True):
        q = lax.stop_gradient(jax.nn.softmax((t.astype(dtype) - center) / teacher_temp, axis=-1))
        ce = -jnp.sum(q * jax.nn.log_softmax(s.astype(dtype) / student_temp, axis=-1), axis=-1)
        # The mask is data (which patches were hidden), not a weight to differentiate.
        w = lax.stop_gradient(m.astype(dtype))
        per_image = jnp.sum(ce * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)
        total = total + jnp.sum(per_image) / batch
    return global_sum(total / len(student_patch), axis_name)
