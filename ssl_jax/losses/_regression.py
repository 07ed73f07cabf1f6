"""Negative-free regression objectives: BYOL's normalised MSE and SimSiam's negative cosine.

An online branch's prediction ``p`` regresses a target projection ``z`` of another view.
Both losses stop the gradient of ``z`` themselves, so they are safe to call with a target
that shares parameters with the online branch (SimSiam) as well as with an EMA target (BYOL).

Every loss is a mean over the batch and takes ``axis_name`` (see ``_distributed``): None when
the arrays are the global batch (one device, or ``jax.jit`` over a sharded ``Mesh``); the
mapped axis name inside ``shard_map``/``pmap``, where each device returns the global mean and
the gradient of that global mean with respect to its own rows.
"""

import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax.losses import _validate
from ssl_jax.losses._contrastive import l2_normalize
from ssl_jax.losses._distributed import compute_dtype, global_sum, num_devices


def _check_pair(p: jax.Array, z: jax.Array, names: tuple[str, str]) -> None:
    _validate.check_rank(p, 2, names[0])
    _validate.check_same_shape(p, z, names)
    _validate.check_min_batch(p, 1, names[0])


def _cosine(p: jax.Array, z: jax.Array) -> jax.Array:
    """Per-row cosine similarity ``[B]`` of ``p`` and a constant ``z``, in float32 or wider."""
    dtype = compute_dtype(p, z)
    # stop_gradient: z is the regression target. In BYOL it comes from the EMA network (never
    # differentiated); in SimSiam the stop-gradient is what prevents collapse (Chen & He, Sec. 4).
    z = lax.stop_gradient(z)
    return jnp.sum(l2_normalize(p.astype(dtype)) * l2_normalize(z.astype(dtype)), axis=-1)


def _batch_mean(per_row: jax.Array, axis_name: str | None) -> jax.Array:
    return global_sum(jnp.sum(per_row) / (per_row.shape[0] * num_devices(axis_name)), axis_name)


def byol_loss(p: jax.Array, z: jax.Array, *, axis_name: str | None = None) -> jax.Array:
    """BYOL's regression loss ``||p/||p|| - z/||z|| ||^2 = 2 - 2 cos(p, z)``, batch mean.

    Args:
      p: online predictions ``[B, D]`` (per-device rows when ``axis_name`` is set).
      z: target projections ``[B, D]`` of the other view; treated as a constant.
      axis_name: mapped axis of ``shard_map``/``pmap`` to average over, or None.

    Returns:
      Scalar in ``[0, 4]``: the mean over the global batch; 0 when ``p`` and ``z`` point the
      same way.

    References:
      Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
      NeurIPS 2020 (Eq. 2).
    """
    _check_pair(p, z, ("p", "z"))
    return _batch_mean(2.0 - 2.0 * _cosine(p, z), axis_name)


def byol_symmetric_loss(
    p1: jax.Array,
    p2: jax.Array,
    z1: jax.Array,
    z2: jax.Array,
    *,
    axis_name: str | None = None,
) -> jax.Array:
    """BYOL's symmetrised loss ``L(p1, z2) + L(p2, z1)`` (the paper sums, it does not average).

    Args:
      p1, p2: online predictions ``[B, D]`` of views 1 and 2.
      z1, z2: target projections ``[B, D]`` of views 1 and 2; treated as constants.
      axis_name: mapped axis of ``shard_map``/``pmap`` to average over, or None.

    Returns:
      Scalar in ``[0, 8]``.

    References:
      Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020 (Sec. 3.1, L + L~).
    """
    for p, z, names in ((p1, z2, ("p1", "z2")), (p2, z1, ("p2", "z1"))):
        _check_pair(p, z, names)
    _validate.check_same_shape(p1, p2, ("p1", "p2"))
    return byol_loss(p1, z2, axis_name=axis_name) + byol_loss(p2, z1, axis_name=axis_name)


def simsiam_loss(p: jax.Array, z: jax.Array, *, axis_name: str | None = None) -> jax.Array:
    """SimSiam's ``D(p, stopgrad(z)) = -cos(p, z)``, batch mean.

    Args:
      p: predictor outputs ``[B, D]`` (per-device rows when ``axis_name`` is set).
      z: projector outputs ``[B, D]`` of the other view; the gradient is stopped here.
      axis_name: mapped axis of ``shard_map``/``pmap`` to average over, or None.

    Returns:
      Scalar in ``[-1, 1]``; -1 when ``p`` and ``z`` point the same way.

    References:
      Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021 (Eq. 1, 3).
    """
    _check_pair(p, z, ("p", "z"))
    return _batch_mean(-_cosine(p, z), axis_name)


def simsiam_symmetric_loss(
    p1: jax.Array,
    p2: jax.Array,
    z1: jax.Array,
    z2: jax.Array,
    *,
    axis_name: str | None = None,
) -> jax.Array:
    """SimSiam's symmetrised loss ``0.5 D(p1, z2) + 0.5 D(p2, z1)``.

    Args:
      p1, p2: predictor outputs ``[B, D]`` of views 1 and 2.
      z1, z2: projector outputs ``[B, D]`` of views 1 and 2; gradients stopped.
      axis_name: mapped axis of ``shard_map``/``pmap`` to average over, or None.

    Returns:
      Scalar in ``[-1, 1]``.

    References:
      Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021 (Eq. 4).
    """
    for p, z, names in ((p1, z2, ("p1", "z2")), (p2, z1, ("p2", "z1"))):
        _check_pair(p, z, names)
    _validate.check_same_shape(p1, p2, ("p1", "p2"))
    return 0.5 * (
        simsiam_loss(p1, z2, axis_name=axis_name) + simsiam_loss(p2, z1, axis_name=axis_name)
    )
