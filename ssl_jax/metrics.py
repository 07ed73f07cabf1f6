"""Representation monitors: alignment, uniformity, embedding std, effective rank (pure, jit-able).

References:
  Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and
  Uniformity on the Hypersphere", ICML 2020.
  Roy & Vetterli, "The effective rank: a measure of effective dimensionality", EUSIPCO 2007.
"""

import jax
import jax.numpy as jnp

from ssl_jax.losses._validate import check_min_batch, check_positive, check_rank, check_same_shape


def _normalize(z: jax.Array) -> jax.Array:
    z = z.astype(jnp.float32)
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def alignment(z1: jax.Array, z2: jax.Array, *, alpha: float = 2.0) -> jax.Array:
    """Mean ``||f(x) - f(y)||^alpha`` over positive pairs of L2-normalised embeddings.

    Args:
      z1, z2: ``[B, D]`` embeddings of two views of the same images.
      alpha: distance exponent (2 in the paper).

    Returns:
      Scalar in ``[0, 2^alpha]``; 0 when the views map to the same point.
    """
    check_rank(z1, 2, "z1")
    check_same_shape(z1, z2, ("z1", "z2"))
    check_positive(alpha, "alpha")
    d = jnp.linalg.norm(_normalize(z1) - _normalize(z2), axis=-1)
    return jnp.mean(d**alpha)


def uniformity(z: jax.Array, *, t: float = 2.0) -> jax.Array:
    """``log mean_{i != j} exp(-t ||z_i - z_j||^2)`` of L2-normalised embeddings.

    Args:
      z: ``[B, D]`` embeddings, ``B >= 2``.
      t: temperature (2 in the paper).

    Returns:
      Scalar <= 0; lower means more uniformly spread on the sphere.
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

    Collapse to a point gives 0; embeddings spread uniformly give about ``1 / sqrt(D)``.

    Args:
      z: ``[B, D]`` embeddings, ``B >= 2``.
    """
    check_rank(z, 2, "z")
    check_min_batch(z, 2, "z")
    return jnp.mean(jnp.std(_normalize(z), axis=0))


def effective_rank(z: jax.Array, *, eps: float = 1e-12) -> jax.Array:
    """``exp(H(p))`` with ``p`` the normalised singular values of the embeddings.

    Collapse to a line gives 1; ``D`` isotropic dimensions give about ``D``.

    Args:
      z: ``[B, D]`` embeddings, ``B >= 2``.
      eps: guards ``log 0``.
    """
    check_rank(z, 2, "z")
    check_min_batch(z, 2, "z")
    z = z.astype(jnp.float32)
    s = jnp.linalg.svd(z, compute_uv=False)
    p = s / jnp.maximum(jnp.sum(s), eps)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.maximum(p, eps)), 0.0))
    return jnp.exp(entropy)
