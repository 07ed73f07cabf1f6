"""Exponential moving averages of parameters (BYOL / MoCo / DINO target networks).

References:
  Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020 (cosine momentum schedule).
  He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def cosine_ema_momentum(
    step: int | jax.Array,
    total_steps: int,
    *,
    base: float = 0.996,
    final: float = 1.0,
) -> jax.Array:
    """BYOL's target momentum: ``final - (final - base) * (cos(pi * k / K) + 1) / 2``.

    With ``final = 1`` this is ``1 - (1 - base) * (cos(pi * k / K) + 1) / 2``: ``base`` at
    ``k = 0``, rising to ``final`` at ``k = K`` and staying there after.

    Args:
      step: current step ``k`` (int or traced scalar).
      total_steps: ``K`` > 0.
      base: momentum at step 0, in [0, 1].
      final: momentum at step ``K``, in [0, 1].

    Returns:
      The momentum as a float32 scalar.

    References:
      Grill et al. 2020, Section 3.2 / Appendix J.
    """
    if int(total_steps) != total_steps or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps}")
    for name, value in (("base", base), ("final", final)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    k = jnp.clip(jnp.asarray(step, jnp.float32), 0.0, float(total_steps))
    return final - (final - base) * (jnp.cos(jnp.pi * k / total_steps) + 1.0) / 2.0


def ema_update(target: PyTree, online: PyTree, momentum: float | jax.Array) -> PyTree:
    """One EMA step ``target <- momentum * target + (1 - momentum) * online``, leaf by leaf.

    No ``stop_gradient`` here: the update runs after the optimiser step, outside the function
    that ``jax.grad`` differentiates, so no gradient can flow through it. Inside the loss,
    the target's outputs are what get a ``stop_gradient``.

    Args:
      target: the averaged tree (its dtypes are kept).
      online: tree with the same structure and shapes.
      momentum: scalar in [0, 1]; 1 keeps the target, 0 copies the online tree.

    Returns:
      The new target tree.
    """
    t_def, o_def = jax.tree.structure(target), jax.tree.structure(online)
    if t_def != o_def:
        raise ValueError(f"target and online trees differ: {t_def} vs {o_def}")
    for t, o in zip(jax.tree.leaves(target), jax.tree.leaves(online), strict=True):
        if np.shape(t) != np.shape(o):
            raise ValueError(f"target and online leaves differ in shape: {t.shape} vs {o.shape}")
    if not isinstance(momentum, jax.core.Tracer) and not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")

    def step(t: jax.Array, o: jax.Array) -> jax.Array:
        # Mixed in at least float32, then stored back in the target's own dtype.
        dt = jnp.promote_types(jnp.result_type(t), jnp.float32)
        m = jnp.asarray(momentum, dt)
        return (m * t.astype(dt) + (1 - m) * o.astype(dt)).astype(jnp.result_type(t))

    return jax.tree.map(step, target, online)
