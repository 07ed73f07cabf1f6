"""Representation monitors: alignment, uniformity, embedding std, effective rank.

Pure, jit-able functions of a batch of embeddings ``[B, D]``, computed in float32 or wider.
The train step logs them every step (on each device's rows, then averaged) to spot
collapse early; ``alignment`` and ``uniformity`` are also differentiable losses.
"""

import jax
import jax.numpy as jnp

from ssl_jax.losses._distributed import compute_dtype
from ssl_jax.losses._validate import check_min_batch, check_positive, check_rank, check_same_shape

__all__ = ["alignment", "effective_rank", "embedding_std", "uniformity"]


def _normalize(z: jax.Array) -> jax.Array:
    z = z.astype(compute_dtype(z))
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def alignment(z1: jax.Array, z2: jax.Array, *, alpha: float = 2.0) -> jax.Array:
    """Mean ``||f(x) - f(y)||^alpha`` over positive pairs of L2-normalised embeddings.

    Args:
      z1: ``[B, D]`` embeddings of one view.
      z2: ``[B, D]`` embeddings of another view of the same images, row for row.
      alpha: distance exponent > 0 (2 in the paper).

    Returns:
      Scalar in ``[0, 2^alpha]``; 0 when the two views map to the same point.

    References:
      Wang & Isola, "Understanding Contrastive Representation Learning through Alignment
      and Uniformity on the Hypersphere", ICML 2020 (Eq. 4).
    """
    check_rank(z1, 2, "z1")
    check_same_shape(z1, z2, ("z1", "z2"))
    check_min_batch(z1, 1, "z1")
    check_positive(alpha, "alpha")
    sq = jnp.sum(jnp.square(_normalize(z1) - _normalize(z2)), axis=-1)
    # (sq)^(alpha/2) rather than norm^alpha: the norm's gradient is NaN at 0 (identical views).
    return jnp.mean(jnp.power(sq, alpha / 2.0))


def uniformity(z: jax.Array, *, t: float = 2.0) -> jax.Array:
    """``log mean_{i != j} exp(-t ||z_i - z_j||^2)`` over distinct pairs of L2-normalised rows.

    Args:
      z: ``[B, D]`` embeddings, ``B >= 2``.
      t: temperature > 0 (2 in the paper).

    Returns:
      Scalar in ``[-4t, 0]``; lower means more uniformly spread on the sphere, 0 when every
      row is the same point.

    References:
      Wang & Isola, "Understanding Contrastive Representation Learning through Alignment
      and Uniformity on the Hypersphere", ICML 2020 (Eq. 5).
    """
    check_rank(z, 2, "z")
    check_min_batch(z, 2, "z")
    check_positive(t, "t")
    z = _normalize(z)
    n = z.shape[0]
    sq = jnp.maximum(2.0 - 2.0 * z @ z.T, 0.0)
    off = ~jnp.eye(n, dtype=bool)
    logits = jnp.where(off, -t * sq, -jnp.inf)
    return jax.nn.logsumexp(logits) - jnp.log(n * (n - 1.0))


def embedding_std(z: jax.Array) -> jax.Array:
    """Mean over dimensions of the per-dimension std of L2-normalised embeddings.

    Collapse to a point gives 0; embeddings spread uniformly on the sphere give about
    ``1 / sqrt(D)`` (the SimSiam collapse monitor).

    Args:
      z: ``[B, D]`` embeddings, ``B >= 2``.

    Returns:
      Scalar in ``[0, 1]`` (biased std over the batch).

    References:
      Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021 (Fig. 2).
    """
    check_rank(z, 2, "z")
    check_min_batch(z, 2, "z")
    return jnp.mean(jnp.std(_normalize(z), axis=0))


def effective_rank(z: jax.Array, *, eps: float = 1e-12) -> jax.Array:
    """``exp(H(p))``, ``p_k = s_k / sum(s)`` the normalised singular values of ``z``.

    Collapse to a single direction gives 1; ``D`` equally used orthogonal directions give
    ``D``. The embeddings are not centred (the paper's definition for a matrix).

    Args:
      z: ``[B, D]`` embeddings, ``B >= 2``.
      eps: guards ``log 0`` and an all-zero matrix (which gets rank 1).

    Returns:
      Scalar in ``[1, min(B, D)]``.

    References:
      Roy & Vetterli, "The effective rank: a measure of effective dimensionality", EUSIPCO
      2007 (Def. 1); used for SSL embeddings by Garrido et al., "RankMe", ICML 2023.
    """
    check_rank(z, 2, "z")
    check_min_batch(z, 2, "z")
    check_positive(eps, "eps")
    s = jnp.linalg.svd(z.astype(compute_dtype(z)), compute_uv=False)
    p = s / jnp.maximum(jnp.sum(s), eps)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.maximum(p, eps)), 0.0))
    return jnp.exp(entropy)
