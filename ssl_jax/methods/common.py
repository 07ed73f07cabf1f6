"""Pieces several methods share: applying a network to groups of views, momentum targets,
per-example random keys.

Nothing here reads a config; builders in ``ssl_jax.build_methods`` pass plain arguments.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax.methods.base import Method, PyTree, bn_vars, concat_views
from ssl_jax.methods.networks import SiameseNet
from ssl_jax.train.ema import cosine_ema_momentum, ema_update


def init_net(net: nn.Module, rng: jax.Array, x: jax.Array, **kwargs) -> tuple[PyTree, PyTree]:
    """``(params, batch_stats)`` of ``net`` initialised on ``x`` in train mode.

    Args:
      net: a Flax module whose ``__call__`` takes ``(x, *, train, **kwargs)``.
      rng: PRNG key.
      x: an example input batch.
      **kwargs: passed on to ``__call__``.

    Returns:
      The params and the BatchNorm statistics (``{}`` for networks without BatchNorm).
    """
    variables = net.init(rng, x, train=True, **kwargs)
    return variables["params"], variables.get("batch_stats", {})


def apply_train(
    net: nn.Module,
    params: PyTree,
    batch_stats: PyTree,
    *args: Any,
    method: Callable | None = None,
    **kwargs: Any,
) -> tuple[Any, PyTree]:
    """Runs ``net`` in train mode and returns ``(outputs, new_batch_stats)``.

    BatchNorm uses the statistics of this batch and updates its running averages; under
    ``jax.jit`` over a sharded ``Mesh`` those statistics are over the global batch.

    Args:
      net: the module.
      params: its parameters.
      batch_stats: its BatchNorm statistics (``{}`` if none).
      *args: positional inputs.
      method: optional module method or ``fn(module, *args)`` to call instead of
        ``__call__``; it must accept ``train`` as a keyword when ``method`` is None.
      **kwargs: keyword inputs.

    Returns:
      The outputs and the updated BatchNorm statistics.
    """
    if method is None:
        kwargs = {"train": True, **kwargs}
    out, updates = net.apply(
        bn_vars(params, batch_stats), *args, method=method, mutable=["batch_stats"], **kwargs
    )
    return out, updates.get("batch_stats", {})


def resolution_groups(views: Sequence[jax.Array]) -> list[list[int]]:
    """Indices of consecutive views that share a shape (multi-crop: global, then local).

    Args:
      views: per-view batches ``[B, H, W, C]``.

    Returns:
      A list of groups, each a list of consecutive view indices with equal shapes.
    """
    if not views:
        raise ValueError("need at least one view")
    groups: list[list[int]] = [[0]]
    for i in range(1, len(views)):
        if views[i].shape[0] != views[0].shape[0]:
            raise ValueError(
                f"every view needs the same batch size, got {views[0].shape} and {views[i].shape}"
            )
        if views[i].shape == views[groups[-1][-1]].shape:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def multi_crop_forward(module: nn.Module, views: Sequence[jax.Array], *, train: bool):
    """``SiameseNet`` forward over views of several sizes, as SwAV's / DINO's wrappers.

    The backbone runs once per resolution group on the group's concatenated views; the
    heads then run ONCE on all crops' features together (so their BatchNorm statistics,
    if any, are over every crop), exactly as ``MultiCropWrapper`` (DINO) and
    ``ResNet.forward`` (SwAV) do. Pass as ``method=`` to ``apply``.

    Args:
      module: the bound ``SiameseNet`` (``encoder``, optional ``projector``/``predictor``).
      views: per-view batches, same-size views adjacent.
      train: BatchNorm mode.

    Returns:
      ``(h, z, p)`` over the concatenated views, in view order (rows ``v*B:(v+1)*B`` are
      view ``v``).
    """
    feats = [
        module.encoder(concat_views([views[i] for i in group]), train=train)
        for group in resolution_groups(views)
    ]
    h = jnp.concatenate(feats, axis=0)
    z = module.projector(h, train=train) if module.projector is not None else h
    p = module.predictor(z, train=train) if module.predictor is not None else z
    return h, z, p


def split_views(x: jax.Array, num_views: int) -> list[jax.Array]:
    """Inverse of ``concat_views``.

    Args:
      x: ``[V * B, ...]``, the views stacked on the batch axis.
      num_views: ``V``.

    Returns:
      ``V`` arrays ``[B, ...]``.
    """
    if x.shape[0] % num_views:
        raise ValueError(f"cannot split {x.shape[0]} rows into {num_views} equal views")
    n = x.shape[0] // num_views
    return [x[v * n : (v + 1) * n] for v in range(num_views)]


def per_example_keys(rng: jax.Array, n_local: int, axis_name: str | None) -> jax.Array:
    """One key per example of the GLOBAL batch, this device's rows under ``pmap``.

    So that random choices made inside a loss (MAE masks) are the same however the batch is
    split across devices (``jit`` over a Mesh and ``pmap`` agree).

    Args:
      rng: the step's key (identical on every device).
      n_local: examples on this device (the global batch when ``axis_name`` is None).
      axis_name: the mapped axis under ``pmap``/``shard_map``, or None.

    Returns:
      ``[n_local]`` keys.
    """
    if axis_name is None:
        return jax.random.split(rng, n_local)
    n_dev = lax.psum(1, axis_name)
    keys = jax.random.split(rng, n_local * n_dev)
    return lax.dynamic_slice_in_dim(keys, lax.axis_index(axis_name) * n_local, n_local)


def l2_normalize(x: jax.Array, *, eps: float = 1e-12) -> jax.Array:
    """Rows scaled to unit L2 norm, ``x / max(||x||, eps)`` (torch's ``F.normalize``).

    Args:
      x: ``[..., D]``; the norm is taken in float32 at least.
      eps: lower bound on the norm (an all-zero row stays zero).

    Returns:
      An array of ``x``'s shape and dtype.
    """
    sq = jnp.sum(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
    return (x * lax.rsqrt(jnp.maximum(sq, eps * eps))).astype(x.dtype)


def init_with_queue(
    method: Method, rng: jax.Array, images: jax.Array, queue_size: int
) -> tuple[PyTree, PyTree, dict[str, jax.Array]]:
    """Networks of a queue method (MoCo v2, NNCLR) and its queue of random unit rows.

    Args:
      method: a method whose ``net`` returns ``(features, embedding, prediction)``.
      rng: PRNG key (networks, queue rows and the sample views each get their own).
      images: a uint8 sample batch (only shapes matter).
      queue_size: rows of the queue.

    Returns:
      ``(params, batch_stats, {'queue': [queue_size, D] unit rows, 'ptr': 0})`` with ``D``
      the embedding size.
    """
    net_key, queue_key, view_key = jax.random.split(rng, 3)
    views = method.views(jax.random.split(view_key, images.shape[0]), images)
    params, stats = init_net(method.net, net_key, views[0])
    _, z, _ = jax.eval_shape(
        lambda x: method.net.apply(bn_vars(params, stats), x, train=False), views[0]
    )
    queue = l2_normalize(jax.random.normal(queue_key, (queue_size, z.shape[-1])))
    return params, stats, {"queue": queue, "ptr": jnp.zeros((), jnp.int32)}


def copy_tree(tree: PyTree) -> PyTree:
    """A copy with fresh buffers, so a target never aliases the (donated) online arrays.

    Args:
      tree: a pytree of arrays.

    Returns:
      The same values in new buffers (donating both trees in one call is then legal).
    """
    return jax.tree.map(jnp.copy, tree)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SiameseMethod(Method):
    """A method whose trained network is one ``SiameseNet``: the shared set-up and encoder.

    Subclasses add their auxiliary state through :meth:`init_aux` and write ``loss``.

    Attributes:
      net: the trained network; :meth:`encode` returns its eval-mode backbone features.
    """

    net: SiameseNet

    def init_online(self, rng: jax.Array, images: jax.Array) -> tuple[PyTree, PyTree]:
        """``(params, batch_stats)`` of ``net``, initialised on the first view of ``images``."""
        views = self.views(jax.random.split(rng, images.shape[0]), images)
        return init_net(self.net, rng, views[0])

    def init_aux(self, params: PyTree, batch_stats: PyTree) -> PyTree:
        """The method's non-gradient state for freshly initialised networks."""
        return {}

    def init(self, rng, images):
        params, stats = self.init_online(rng, images)
        return {"params": params, "batch_stats": stats, "aux": self.init_aux(params, stats)}

    def encode(self, params, batch_stats, images):
        return self.net.apply(bn_vars(params, batch_stats), images, method=SiameseNet.features)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MomentumTargetMethod(SiameseMethod):
    """A method with a target network that is an EMA of (part of) the online network.

    ``aux`` holds ``{'target_params', 'target_batch_stats', ...}``. The target's BatchNorm
    runs in train mode on the current batch and keeps its own running statistics (as in
    BYOL, MoCo and DINO); only parameters are averaged. After every optimiser step,
    ``target <- m * target + (1 - m) * online`` with the momentum ``m`` of the step just
    taken, ``m(k) = final - (final - base) (cos(pi k / K) + 1) / 2``; ``base == final``
    gives MoCo's constant momentum.

    Attributes:
      total_steps: ``K``, the length of the cosine schedule (the run's optimiser steps).
      ema_base: momentum at step 0.
      ema_final: momentum at step ``K``.
      target_exclude: top-level parameter collections the target does not have (e.g. the
        predictor).

    References:
      He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR
      2020 (Eq. 2); Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020 (cosine schedule).
    """

    total_steps: int
    ema_base: float = 0.996
    ema_final: float = 1.0
    target_exclude: tuple[str, ...] = ("predictor",)

    def __post_init__(self):
        # Fail at build time, not at the first traced step.
        cosine_ema_momentum(0, self.total_steps, base=self.ema_base, final=self.ema_final)

    def target_subset(self, tree: PyTree) -> PyTree:
        """The part of an online params / batch-stats tree that the target mirrors."""
        return {k: v for k, v in tree.items() if k not in self.target_exclude}

    def init_target(self, params: PyTree, batch_stats: PyTree) -> dict[str, PyTree]:
        """Target initialised as a copy of the online network (MoCo, BYOL, DINO)."""
        return {
            "target_params": copy_tree(self.target_subset(params)),
            "target_batch_stats": copy_tree(self.target_subset(batch_stats)),
        }

    def init_aux(self, params, batch_stats):
        return self.init_target(params, batch_stats)

    def momentum(self, step: jax.Array) -> jax.Array:
        """The EMA momentum ``m(step)`` of the cosine schedule (float32 scalar)."""
        return cosine_ema_momentum(step, self.total_steps, base=self.ema_base, final=self.ema_final)

    def after_update(self, params, aux, step):
        # The target follows the online network with the momentum of the step just taken.
        tau = self.momentum(step - 1)
        target = ema_update(aux["target_params"], self.target_subset(params), tau)
        return params, dict(aux, target_params=target)

    def step_metrics(self, aux, step):
        return {"ema_momentum": jnp.asarray(self.momentum(step), jnp.float32)}
