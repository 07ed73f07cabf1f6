"""Masked image modelling: MAE's patch layout and its reconstruction loss.

Patches are taken row-major over the image grid and each patch is flattened in
``(row, column, channel)`` order, exactly as MAE's ``patchify``
(``einsum('nchpwq->nhwpqc')``), so targets line up with a ViT's patch tokens.
"""

import math

import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax.losses import _validate
from ssl_jax.losses._distributed import compute_dtype, global_sum


def patchify(images: jax.Array, patch: int) -> jax.Array:
    """Cuts images into non-overlapping square patches.

    Args:
      images: ``[B, H, W, C]``; ``H`` and ``W`` must be multiples of ``patch``.
      patch: patch side ``p`` in pixels.

    Returns:
      ``[B, N, p * p * C]`` with ``N = (H / p) * (W / p)``, patches in row-major grid order.

    References:
      He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022
      (official ``models_mae.py``, ``patchify``).
    """
    _validate.check_rank(images, 4, "images")
    _check_patch(patch)
    b, h, w, c = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {(h, w)} is not a multiple of patch {patch}")
    gh, gw = h // patch, w // patch
    x = images.reshape(b, gh, patch, gw, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, gh * gw, patch * patch * c)


def unpatchify(patches: jax.Array, patch: int, *, grid: tuple[int, int] | None = None) -> jax.Array:
    """Inverse of :func:`patchify`.

    Args:
      patches: ``[B, N, p * p * C]``.
      patch: patch side ``p`` in pixels.
      grid: ``(H / p, W / p)``; None means a square grid (``N`` must be a perfect square),
        as MAE's ``unpatchify``.

    Returns:
      ``[B, H, W, C]`` images.

    References:
      He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022
      (official ``models_mae.py``, ``unpatchify``).
    """
    _validate.check_rank(patches, 3, "patches")
    _check_patch(patch)
    b, n, k = patches.shape
    if grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} patches do not form a square grid; pass grid=(rows, cols)")
        grid = (side, side)
    gh, gw = grid
    if gh * gw != n:
        raise ValueError(f"grid {grid} holds {gh * gw} patches, got {n}")
    if k % (patch * patch):
        raise ValueError(f"patch size {k} is not a multiple of patch * patch = {patch * patch}")
    c = k // (patch * patch)
    x = patches.reshape(b, gh, gw, patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, gh * patch, gw * patch, c)


def _check_patch(patch: int) -> None:
    if not isinstance(patch, int) or patch < 1:
        raise ValueError(f"patch must be a positive int, got {patch!r}")


def mae_loss(
    pred: jax.Array,
    target_patches: jax.Array,
    mask: jax.Array,
    *,
    norm_pix_loss: bool = True,
    eps: float = 1e-6,
    axis_name: str | None = None,
) -> jax.Array:
    """MAE's reconstruction loss: per-patch MSE, averaged over the masked patches only.

    With ``norm_pix_loss`` each target patch is first normalised by its own mean and
    unbiased variance, ``(t - mean) / sqrt(var + eps)`` (``torch.var``'s default, as in the
    official code). Visible patches (``mask == 0``) do not contribute, to the value or to
    the gradient. If no patch of the global batch is masked the loss is 0.

    Args:
      pred: decoder outputs ``[B, N, P]`` (per-device rows when ``axis_name`` is set).
      target_patches: ``patchify(images)``, ``[B, N, P]``; treated as data (not
        differentiated through the normalisation).
      mask: ``[B, N]``, 1 for masked (removed) patches, 0 for visible ones; bool or float.
      norm_pix_loss: normalise each target patch. The paper's best setting (Table 1d,
        used by the official pre-training recipe); the code's flag defaults to off.
      eps: added to the per-patch variance.
      axis_name: mapped axis of ``shard_map``/``pmap`` holding the rest of the batch, or None.

    Returns:
      Scalar: ``sum(mask * mean_P (pred - target)^2) / sum(mask)`` over the global batch.

    References:
      He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022 (Sec. 3,
      "Reconstruction target"; official ``models_mae.py``, ``forward_loss``).
    """
    _validate.check_rank(pred, 3, "pred")
    _validate.check_same_shape(pred, target_patches, ("pred", "target_patches"))
    _validate.check_rank(mask, 2, "mask")
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"mask must have shape {pred.shape[:2]} ([B, N]), got {mask.shape}")
    if norm_pix_loss and pred.shape[-1] < 2:
        raise ValueError("norm_pix_loss needs at least 2 values per patch for the variance")
    _validate.check_positive(eps, "eps")
    dtype = compute_dtype(pred, target_patches)
    # The target is data; a caller differentiating w.r.t. the images should not get a path
    # through the per-patch statistics either.
    target = lax.stop_gradient(target_patches.astype(dtype))
    if norm_pix_loss:
        mean = jnp.mean(target, axis=-1, keepdims=True)
        var = jnp.var(target, axis=-1, keepdims=True, ddof=1)
        target = (target - mean) * lax.rsqrt(var + eps)
    per_patch = jnp.mean(jnp.square(pred.astype(dtype) - target), axis=-1)
    weights = lax.stop_gradient(mask.astype(dtype))
    count = jnp.sum(weights)
    if axis_name is not None:
        count = lax.psum(count, axis_name)
    return global_sum(jnp.sum(per_patch * weights) / jnp.maximum(count, 1.0), axis_name)
