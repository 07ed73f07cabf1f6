"""The training state: one pytree of arrays, checkpointed as a whole."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from ssl_jax.eval.linear_probe import init_online_probe
from ssl_jax.methods.base import Method

PyTree = Any


def check_rgb_batch(images: jax.Array, name: str) -> None:
    """Raises ValueError unless ``images`` is shaped ``[B, H, W, 3]`` (a static check).

    Args:
      images: an image batch (array or shape struct).
      name: what to call it in the message.
    """
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[-1] != 3:
        gray = len(shape) == 4 and shape[-1] == 1
        hint = "; grayscale: repeat it to 3 channels (np.repeat(x, 3, axis=-1))" if gray else ""
        raise ValueError(f"{name} must be RGB images [B, H, W, 3], got shape {shape}{hint}")


@flax.struct.dataclass
class TrainState:
    """Arrays only (no functions), so Orbax can save and restore it as is.

    Attributes:
      step: optimiser steps taken.
      params: trained parameters of the method's network.
      batch_stats: BatchNorm running statistics.
      aux: the method's non-gradient state (EMA target, queue, center ...).
      opt_state: optimiser state.
      probe_params / probe_opt_state: online linear probe on stop-gradient features.
      nonfinite_step: first step whose loss was NaN/Inf (-1 if none). Such a step's update is
        never applied, so the state stays finite and safe to checkpoint.
    """

    step: jax.Array
    params: PyTree
    batch_stats: PyTree
    aux: PyTree
    opt_state: PyTree
    probe_params: PyTree
    probe_opt_state: PyTree
    nonfinite_step: jax.Array


def create_train_state(
    method: Method,
    tx: optax.GradientTransformation,
    probe_tx: optax.GradientTransformation,
    rng: jax.Array,
    sample_images: jax.Array,
    *,
    num_classes: int,
) -> TrainState:
    """Initialises the method on a sample batch of uint8 images.

    Args:
      method: the method (its ``init`` makes params, BatchNorm statistics and aux state).
      tx: the pretraining optimiser.
      probe_tx: the online linear probe's optimiser.
      rng: PRNG key for the networks and the probe.
      sample_images: a uint8 batch ``[B, H, W, 3]`` (only shapes matter).
      num_classes: classes of the online probe.

    Returns:
      A ``TrainState`` at step 0 with ``nonfinite_step = -1``.
    """
    check_rgb_batch(sample_images, "sample_images")
    init_key, probe_key = jax.random.split(rng)
    variables = method.init(init_key, sample_images)
    keys = jax.random.split(init_key, sample_images.shape[0])
    views = method.views(keys, sample_images)
    feature_dim = jax.eval_shape(
        lambda v: method.encode(variables["params"], variables["batch_stats"], v), views[0]
    ).shape[-1]
    probe_params = init_online_probe(probe_key, feature_dim, num_classes)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        aux=variables["aux"],
        opt_state=tx.init(variables["params"]),
        probe_params=probe_params,
        probe_opt_state=probe_tx.init(probe_params),
        nonfinite_step=jnp.full((), -1, jnp.int32),
    )
