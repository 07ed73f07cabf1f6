"""What a self-supervised method is, as seen by the shared train step.

A method owns its networks (one Flax module whose ``params`` are trained), the views it
trains on, its objective, and any auxiliary state that is not trained by gradients (EMA
target, MoCo queue, DINO center, ...). The train step in ``ssl_jax.train.step`` is written
once against this interface; methods never copy it.
"""

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp

PyTree = Any
ViewFn = Callable[[jax.Array, jax.Array], Sequence[jax.Array]]


@flax.struct.dataclass
class LossOutput:
    """Everything the objective returns besides the scalar loss.

    Attributes:
      batch_stats: updated BatchNorm statistics of the online network.
      aux: updated auxiliary state (queue, center, target network statistics ...).
      metrics: scalar loss terms and method-specific monitors, logged every step.
      embeddings: two batches of embeddings ``[B, D]`` of two views of the same images, fed
        to the collapse monitors (std, alignment, uniformity).
      features: backbone features ``[B, F]`` of the first view (stop-gradient is applied by
        the consumer), used by the online linear probe.
    """

    batch_stats: PyTree
    aux: PyTree
    metrics: dict[str, jax.Array]
    embeddings: tuple[jax.Array, jax.Array]
    features: jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class Method(abc.ABC):
    """Base class: a method is a frozen dataclass of plain arguments.

    Attributes:
      view_fn: ``(rng, images_uint8 [B,H,W,3]) -> list of float views`` (an
        ``ssl_jax.augment.make_views`` recipe); :meth:`views` applies it image by image.
      needs_labels: the train step passes the batch's labels to ``loss`` (supervised
        baseline only).
    """

    view_fn: ViewFn
    # A method that trains on labels (the supervised baseline) gets ``labels=`` in ``loss``.
    needs_labels: bool = False

    # -- set-up ---------------------------------------------------------------------------
    @abc.abstractmethod
    def init(self, rng: jax.Array, images: jax.Array) -> dict[str, PyTree]:
        """Returns ``{'params', 'batch_stats', 'aux'}`` for a batch of uint8 images.

        Args:
          rng: PRNG key for the networks (and any random aux state, e.g. a MoCo queue).
          images: a uint8 batch ``[B, H, W, 3]``; only its shapes matter.

        Returns:
          The trained ``params``, the BatchNorm statistics (``{}`` if none) and ``aux``.
        """

    # -- one step -------------------------------------------------------------------------
    def views(self, image_keys: jax.Array, images: jax.Array) -> list[jax.Array]:
        """Device augmentation with one key per image; returns the list of view batches.

        Keys are per image (not per batch) so that an image gets the same views however the
        batch is split across devices (``jit`` over a Mesh and ``pmap`` agree).

        Args:
          image_keys: ``[B]`` PRNG keys, one per image.
          images: uint8 ``[B, H, W, 3]``.

        Returns:
          One float32 batch ``[B, h_v, w_v, 3]`` per view, in the recipe's order.
        """

        def one(key, image):
            return [v[0] for v in self.view_fn(key, image[None])]

        return jax.vmap(one)(image_keys, images)

    @abc.abstractmethod
    def loss(
        self,
        params: PyTree,
        batch_stats: PyTree,
        aux: PyTree,
        views: Sequence[jax.Array],
        rng: jax.Array,
        step: jax.Array,
        *,
        axis_name: str | None = None,
    ) -> tuple[jax.Array, LossOutput]:
        """The objective on one (global or, with ``axis_name``, per-device) batch.

        Args:
          params: the trained parameters (``jax.grad`` differentiates with respect to them).
          batch_stats: BatchNorm statistics.
          aux: the method's non-gradient state.
          views: the view batches from :meth:`views`.
          rng: a key for randomness inside the loss (masks), the same on every device.
          step: optimiser steps taken before this one (int32 scalar).
          axis_name: set only under ``pmap``/``shard_map``: the axis holding the rest of
            the batch, for losses that need the whole batch.

        Returns:
          ``(loss, LossOutput)``: the scalar loss of the global batch and everything else.
        """

    def after_update(self, params: PyTree, aux: PyTree, step: jax.Array) -> tuple[PyTree, PyTree]:
        """Non-gradient updates after the optimiser step (EMA target, prototype norm...).

        Args:
          params: the parameters after the optimiser update.
          aux: ``LossOutput.aux`` of this step's loss.
          step: the number of optimiser steps taken so far (already incremented).

        Returns:
          ``(params, aux)`` to store in the state.
        """
        return params, aux

    def grad_mask(self, grads: PyTree, step: jax.Array) -> PyTree:
        """Hook to zero gradients of some parameters at some steps (frozen prototypes).

        Args:
          grads: gradients of ``loss`` with respect to ``params`` (global sums).
          step: optimiser steps taken before this one.

        Returns:
          The gradients the optimiser receives.
        """
        return grads

    def step_metrics(self, aux: PyTree, step: jax.Array) -> dict[str, jax.Array]:
        """Schedule values to log (EMA momentum, teacher temperature ...).

        Args:
          aux: the aux state after :meth:`after_update`.
          step: optimiser steps taken before this step's update.

        Returns:
          A dict of scalar arrays, merged into the step's metrics.
        """
        return {}

    # -- downstream use -------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, params: PyTree, batch_stats: PyTree, images: jax.Array) -> jax.Array:
        """Frozen backbone features ``[B, F]`` of normalised float images (eval mode).

        Args:
          params: trained parameters.
          batch_stats: BatchNorm statistics.
          images: float ``[B, H, W, 3]``, normalised as the views are.

        Returns:
          ``[B, F]`` features for kNN, linear probes and downstream use.
        """


def bn_vars(params: PyTree, batch_stats: PyTree) -> dict[str, PyTree]:
    """Flax variables dict, leaving out empty BatchNorm collections."""
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    return variables


def stop_gradient_tree(tree: PyTree) -> PyTree:
    return jax.tree.map(jax.lax.stop_gradient, tree)


def concat_views(views: Sequence[jax.Array]) -> jax.Array:
    """Views of equal size stacked on the batch axis (one forward pass, shared BN stats)."""
    return jnp.concatenate(list(views), axis=0)
