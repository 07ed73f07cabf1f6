"""Optimisers and learning-rate schedules used for self-supervised pretraining.

Everything returns plain ``optax`` objects. Parameter masks are built from a predicate on
``(path, param)``, where ``path`` is the tuple of key names leading to a leaf of a Flax
params tree, e.g. ``('encoder', 'Conv_0', 'kernel')``.

References:
  You et al., "Large Batch Training of Convolutional Networks" (LARS), 2017.
  Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations"
  (SimCLR), ICML 2020: LARS, linear warm-up + cosine decay, no decay on biases / BN.
  Grill et al., "Bootstrap Your Own Latent" (BYOL), NeurIPS 2020: same recipe.
  Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (AdamW), ICLR 2019.
  Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
  Assignments" (SwAV), NeurIPS 2020: prototypes frozen for the first iterations.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any
Path = tuple[str, ...]
ParamPredicate = Callable[[Path, jax.Array], bool]

OPTIMIZER_NAMES = ("lars", "sgd", "adamw")
_NORM_AND_BIAS_NAMES = frozenset({"bias", "scale"})


# -- parameter masks -------------------------------------------------------------------------
def path_names(keypath: tuple) -> Path:
    """Turns a ``jax.tree_util`` key path into a tuple of plain names."""
    names = []
    for k in keypath:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                names.append(str(getattr(k, attr)))
                break
        else:
            names.append(str(k))
    return tuple(names)


def is_bias_or_norm(path: Path, param: jax.Array) -> bool:
    """True for biases and normalisation parameters (excluded from weight decay / LARS).

    Flax names them ``bias`` (Dense, Conv, BatchNorm, LayerNorm) and ``scale`` (BatchNorm,
    LayerNorm); any parameter of rank <= 1 is treated the same way, as in SimCLR and BYOL.

    Args:
      path: key names from the root of the params tree to this leaf.
      param: the parameter (only its rank is used).

    Returns:
      Whether the leaf is a bias or a normalisation parameter.
    """
    return np.ndim(param) <= 1 or (bool(path) and path[-1] in _NORM_AND_BIAS_NAMES)


def param_mask(params: PyTree, predicate: Callable[[Path, jax.Array], bool]) -> PyTree:
    """A tree of Python bools shaped like ``params``: ``predicate(path, leaf)`` per leaf."""
    return jax.tree_util.tree_map_with_path(
        lambda kp, p: bool(predicate(path_names(kp), p)), params
    )


def decay_mask(params: PyTree, *, exclude: ParamPredicate | None = is_bias_or_norm) -> PyTree:
    """True where weight decay (and LARS adaptation) applies, False for excluded leaves.

    Args:
      params: the parameter tree (arrays or shape structs).
      exclude: predicate on ``(path, param)`` of leaves to leave alone; ``None`` excludes
        nothing.

    Returns:
      A tree of bools with the structure of ``params``, usable as an ``optax`` mask.
    """
    if exclude is None:
        return jax.tree.map(lambda _: True, params)
    return param_mask(params, lambda path, p: not exclude(path, p))


def param_labels(
    params: PyTree,
    predicate: ParamPredicate,
    *,
    labels: tuple[str, str] = ("trainable", "frozen"),
) -> PyTree:
    """Labels for ``optax.multi_transform``: ``labels[1]`` where ``predicate`` holds.

    Args:
      params: the parameter tree.
      predicate: on ``(path, param)``.
      labels: ``(label_if_false, label_if_true)``.

    Returns:
      A tree of strings with the structure of ``params``.
    """
    return jax.tree_util.tree_map_with_path(
        lambda kp, p: labels[1] if predicate(path_names(kp), p) else labels[0], params
    )


# -- schedules -------------------------------------------------------------------------------
def warmup_cosine_schedule(
    base_lr: float,
    total_steps: int,
    warmup_steps: int,
    *,
    final_lr: float = 0.0,
    start_lr: float = 0.0,
) -> optax.Schedule:
    """Linear warm-up from ``start_lr`` to ``base_lr``, then cosine decay to ``final_lr``.

    ``lr(k) = start + (base - start) * k / W`` for ``k < W``, then
    ``final + (base - final) * (1 + cos(pi * (k - W) / (K - W))) / 2``, and ``final_lr``
    from step ``K`` on (``W = warmup_steps``, ``K = total_steps``).

    Args:
      base_lr: peak learning rate (already scaled for the batch size).
      total_steps: total number of optimiser steps ``K``.
      warmup_steps: linear warm-up length ``W``, ``0 <= W <= K``.
      final_lr: value reached at step ``K``.
      start_lr: value at step 0.

    Returns:
      A schedule ``step -> learning rate`` (float32), usable under ``jax.jit``.

    References:
      Loshchilov & Hutter, "SGDR" 2017; Goyal et al., "Accurate, Large Minibatch SGD" 2017.
    """
    if int(total_steps) != total_steps or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps}")
    if int(warmup_steps) != warmup_steps or not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps must be an integer in [0, total_steps={total_steps}], got {warmup_steps}"
        )
    for name, value in (("base_lr", base_lr), ("final_lr", final_lr), ("start_lr", start_lr)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
    warmup = int(warmup_steps)
    decay = int(total_steps) - warmup

    def schedule(count: jax.Array) -> jax.Array:
        k = jnp.asarray(count, jnp.float32)
        ramp = start_lr + (base_lr - start_lr) * k / max(warmup, 1)
        # With no decay phase (warmup == total) the value from step K on is final_lr.
        progress = jnp.clip((k - warmup) / decay, 0.0, 1.0) if decay else jnp.ones_like(k)
        cosine = final_lr + (base_lr - final_lr) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(k < warmup, ramp, cosine).astype(jnp.float32)

    return schedule


# -- optimisers ------------------------------------------------------------------------------
def _check_hparams(**values: float) -> None:
    for name, value in values.items():
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value}")


def _mask_fn(exclude: ParamPredicate | None) -> Callable[[PyTree], PyTree]:
    return lambda params: decay_mask(params, exclude=exclude)


def lars(
    learning_rate: optax.ScalarOrSchedule,
    *,
    weight_decay: float = 1e-6,
    momentum: float = 0.9,
    trust_coefficient: float = 1e-3,
    eps: float = 0.0,
    exclude_from_adaptation_and_wd: ParamPredicate | None = is_bias_or_norm,
) -> optax.GradientTransformation:
    """LARS as used by SimCLR and BYOL.

    Per leaf ``w`` with gradient ``g`` (leaves not excluded):
    ``u = g + wd * w``; ``u *= eta * ||w|| / (||u|| + eps)`` when both norms are > 0;
    ``v = momentum * v + lr * u``; ``w -= v``. Excluded leaves (biases and normalisation
    parameters by default) skip both the decay and the trust ratio: ``u = g``.

    The learning rate enters the momentum buffer (SimCLR's TF LARS and ``optax.lars``);
    BYOL's code applies it after the momentum instead. Both agree while the rate is constant
    and differ only in how fast a changing rate takes effect.

    Args:
      learning_rate: scalar or schedule.
      weight_decay: L2 coefficient ``wd`` added to the gradient.
      momentum: heavy-ball momentum.
      trust_coefficient: ``eta``.
      eps: added to ``||u||`` in the trust ratio.
      exclude_from_adaptation_and_wd: predicate ``(path, param) -> bool`` of leaves that get
        neither weight decay nor the trust ratio; ``None`` adapts every leaf.

    Returns:
      The ``optax.GradientTransformation``.

    References:
      You et al. 2017 (arXiv:1708.03888); SimCLR ``lars_optimizer.py``; BYOL ``optimizers.py``.
    """
    _check_hparams(
        weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient, eps=eps
    )
    mask = _mask_fn(exclude_from_adaptation_and_wd)
    return optax.lars(
        learning_rate,
        weight_decay=weight_decay,
        weight_decay_mask=mask,
        trust_coefficient=trust_coefficient,
        eps=eps,
        trust_ratio_mask=mask,
        momentum=momentum,
    )


def make_optimizer(
    name: str,
    *,
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    trust_coefficient: float = 1e-3,
    clip_grad_norm: float | None = None,
    exclude_norm_and_bias_from_wd: bool = True,
) -> optax.GradientTransformation:
    """The pretraining optimiser picked by name.

    * ``lars``: :func:`lars` (biases / norms skip decay and adaptation when asked).
    * ``sgd``: ``g + wd * w`` (coupled L2, as PyTorch SGD), then heavy-ball momentum.
    * ``adamw``: Adam with decoupled weight decay ``lr * wd * w``.

    Args:
      name: one of ``'lars'``, ``'sgd'``, ``'adamw'``.
      learning_rate: scalar or schedule.
      weight_decay: decay coefficient.
      momentum: SGD / LARS momentum (``0`` for plain SGD).
      b1: Adam first-moment decay.
      b2: Adam second-moment decay.
      eps: Adam epsilon.
      trust_coefficient: LARS ``eta``.
      clip_grad_norm: if set, gradients are first rescaled to this global norm at most.
      exclude_norm_and_bias_from_wd: leave biases and norm parameters (see
        :func:`is_bias_or_norm`) out of weight decay (and LARS adaptation).

    Returns:
      The ``optax.GradientTransformation``.
    """
    if name not in OPTIMIZER_NAMES:
        raise ValueError(f"unknown optimizer {name!r}; use one of {OPTIMIZER_NAMES}")
    _check_hparams(weight_decay=weight_decay, momentum=momentum, eps=eps)
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"b1 and b2 must be in [0, 1), got b1={b1}, b2={b2}")
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"clip_grad_norm must be > 0 or None, got {clip_grad_norm}")
    exclude = is_bias_or_norm if exclude_norm_and_bias_from_wd else None
    if name == "lars":
        tx = lars(
            learning_rate,
            weight_decay=weight_decay,
            momentum=momentum,
            trust_coefficient=trust_coefficient,
            exclude_from_adaptation_and_wd=exclude,
        )
    elif name == "sgd":
        tx = optax.chain(
            optax.add_decayed_weights(weight_decay, mask=_mask_fn(exclude)),
            optax.sgd(learning_rate, momentum=momentum or None),
        )
    else:
        tx = optax.adamw(
            learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=_mask_fn(exclude)
        )
    if clip_grad_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip_grad_norm), tx)
    return tx


# -- frozen parameters -----------------------------------------------------------------------
def zero_grads_for(
    grads: PyTree, frozen: ParamPredicate, *, active: bool | jax.Array = True
) -> PyTree:
    """Zeroes the gradients of the leaves where ``frozen(path, leaf)`` holds, when ``active``.

    Fits a method's gradient hook (e.g. ``active = step < freeze_steps``). The optimiser still
    runs on those leaves: weight decay and momentum keep acting, so with LARS/SGD they still
    move slightly. For leaves that must not change at all use :func:`freeze`.

    Args:
      grads: gradient tree.
      frozen: predicate ``(path, grad) -> bool`` (evaluated at trace time).
      active: bool or traced scalar bool; nothing is zeroed when False.

    Returns:
      The gradients with frozen leaves set to zero while ``active``.
    """
    mask = param_mask(grads, frozen)
    return jax.tree.map(
        lambda g, m: jnp.where(active, jnp.zeros_like(g), g) if m else g, grads, mask
    )


class FreezeState(NamedTuple):
    """State of :func:`freeze`: steps seen so far and the wrapped optimiser's state."""

    count: jax.Array
    inner: PyTree


def _hold_param_subtrees(new: PyTree, old: PyTree, params: PyTree, hold: PyTree) -> PyTree:
    """Keeps ``old`` for held leaves in every optimiser-state subtree shaped like params."""
    treedef = jax.tree.structure(params)
    if jax.tree_util.treedef_is_leaf(treedef):
        raise ValueError("freeze needs a params tree (e.g. a dict of arrays), not a bare array")
    shapes = [np.shape(p) for p in jax.tree.leaves(params)]

    def like_params(x: PyTree) -> bool:
        if jax.tree.structure(x) != treedef:
            return False
        return [np.shape(leaf) for leaf in jax.tree.leaves(x)] == shapes

    def select(n: PyTree, o: PyTree) -> PyTree:
        if not like_params(n):
            return n
        return jax.tree.map(lambda a, b, h: jnp.where(h, b, a), n, o, hold)

    return jax.tree.map(select, new, old, is_leaf=like_params)


def freeze(
    tx: optax.GradientTransformation,
    *,
    frozen: ParamPredicate,
    num_steps: int | None = None,
) -> optax.GradientTransformation:
    """Wraps ``tx`` so the leaves where ``frozen(path, param)`` holds do not move.

    For the first ``num_steps`` updates (all of them if ``None``) frozen leaves get a zero
    update, their gradient is zeroed before ``tx`` (so it does not count in gradient
    clipping), and every optimiser-state subtree shaped like the params (momentum, Adam
    moments) keeps its old values for them. Global counters (learning-rate schedule, Adam
    step) keep advancing. This matches PyTorch's ``p.grad = None`` used by SwAV to freeze the
    prototypes during the first iterations. Unlike ``optax.multi_transform`` with
    ``set_to_zero``, the freeze can end at a given step without re-initialising anything.

    Args:
      tx: the optimiser to wrap.
      frozen: predicate ``(path, param) -> bool`` of the leaves to freeze.
      num_steps: how many updates the freeze lasts; ``None`` for ever.

    Returns:
      The wrapped ``optax.GradientTransformation`` (``update`` needs ``params``).

    References:
      Caron et al. 2020 (SwAV), ``main_swav.py``: ``freeze_prototypes_niters``.
    """
    if num_steps is not None and (int(num_steps) != num_steps or num_steps < 0):
        raise ValueError(f"num_steps must be a non-negative integer or None, got {num_steps}")

    def init_fn(params: PyTree) -> FreezeState:
        return FreezeState(count=jnp.zeros((), jnp.int32), inner=tx.init(params))

    def update_fn(updates: PyTree, state: FreezeState, params: PyTree | None = None):
        if params is None:
            raise ValueError("freeze(...).update needs params to find the frozen leaves")
        mask = param_mask(params, frozen)
        active = jnp.asarray(True) if num_steps is None else state.count < num_steps
        hold = jax.tree.map(lambda m: jnp.logical_and(active, m), mask)
        updates = jax.tree.map(lambda g, h: jnp.where(h, jnp.zeros_like(g), g), updates, hold)
        new_updates, new_inner = tx.update(updates, state.inner, params)
        new_updates = jax.tree.map(
            lambda u, h: jnp.where(h, jnp.zeros_like(u), u), new_updates, hold
        )
        new_inner = _hold_param_subtrees(new_inner, state.inner, params, hold)
        count = optax.safe_int32_increment(state.count)
        return new_updates, FreezeState(count=count, inner=new_inner)

    return optax.GradientTransformation(init_fn, update_fn)
