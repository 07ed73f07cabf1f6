"""Linear probes on frozen features: the offline protocol and the online monitor.

Offline (``linear_probe``): features are extracted once, without augmentation; each feature
is standardised with the training-set mean and standard deviation; a multinomial logistic
regression is trained with momentum SGD, a cosine learning-rate schedule and L2 weight decay
on the weights (not the bias); top-1 / top-5 are measured on the test set. The whole fit is
one jitted ``lax.scan`` and is deterministic given the seed (it only draws the minibatch
order).

Online (``online_probe_loss``): a linear classifier trained alongside pretraining on
stop-gradient backbone features, a cheap running estimate of linear separability.

Both use the same parameter tree ``{'kernel': [F, C], 'bias': [C]}`` as ``flax.linen.Dense``.

References:
  Zhang et al., "Colorful Image Colorization", ECCV 2016 (linear evaluation protocol);
  Chen et al., "A Simple Framework for Contrastive Learning", ICML 2020, App. B.6;
  Kolesnikov et al., "Revisiting Self-Supervised Visual Representation Learning", CVPR 2019.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax.eval._accuracy import topk_accuracy

Params = dict[str, jax.Array]
_STD_FLOOR = 1e-6


def init_online_probe(rng: jax.Array, feature_dim: int, num_classes: int) -> Params:
    """Parameters of a linear classifier (``flax.linen.Dense``-shaped tree).

    Args:
      rng: PRNG key.
      feature_dim: input feature size ``F``.
      num_classes: number of classes ``C``.

    Returns:
      ``{'kernel': [F, C] ~ N(0, 0.01^2), 'bias': zeros [C]}`` (float32).

    References:
      He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022 (probe init).
    """
    if feature_dim < 1 or num_classes < 1:
        raise ValueError(
            f"feature_dim and num_classes must be >= 1, got {feature_dim} and {num_classes}"
        )
    return {
        "kernel": 0.01 * jax.random.normal(rng, (feature_dim, num_classes), jnp.float32),
        "bias": jnp.zeros((num_classes,), jnp.float32),
    }


def linear_logits(params: Params, features: jax.Array) -> jax.Array:
    """``features @ kernel + bias``: ``[B, F] -> [B, C]``.

    Args:
      params: ``{'kernel': [F, C], 'bias': [C]}`` (e.g. from :func:`init_online_probe`).
      features: ``[B, F]``.

    Returns:
      Logits ``[B, C]``.
    """
    return features @ params["kernel"] + params["bias"]


def _check_probe_inputs(params: Params, features: jax.Array, labels: jax.Array) -> None:
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(
            f"features must be [B, F] and labels [B], got {features.shape} and {labels.shape}"
        )
    if params["kernel"].shape[0] != features.shape[1]:
        raise ValueError(
            f"probe kernel expects {params['kernel'].shape[0]} features, got {features.shape[1]}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")


def online_probe_loss(
    probe_params: Params, features: jax.Array, labels: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Softmax cross-entropy of the online linear probe, and its top-1 accuracy.

    Args:
      probe_params: ``{'kernel': [F, C], 'bias': [C]}``.
      features: ``[B, F]`` backbone features of the current batch.
      labels: ``[B]`` integer labels.

    Returns:
      ``(mean cross-entropy, top-1 accuracy as a fraction in [0, 1])``; differentiate with
      ``jax.value_and_grad(..., has_aux=True)`` with respect to ``probe_params``.

    References:
      Chen et al., ICML 2020 (online linear evaluation, App. B.6); Caron et al., ICCV 2021.
    """
    features, labels = jnp.asarray(features), jnp.asarray(labels)
    _check_probe_inputs(probe_params, features, labels)
    # stop_gradient: the probe only measures the representation; its loss must never push
    # gradients into the encoder, whatever the caller differentiates.
    features = jax.lax.stop_gradient(features).astype(jnp.float32)
    logits = linear_logits(probe_params, features)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    acc = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32).mean()
    return loss, acc


def feature_standardisation(train_feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature training mean and standard deviation (constant features get std 1).

    Args:
      train_feats: ``[N, F]`` training features.

    Returns:
      ``(mean [F], std [F])`` float32.
    """
    x = np.asarray(train_feats, np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    # A dead unit (constant on the training set) must not blow up test features by 1/0.
    std = np.where(std < _STD_FLOOR, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


@functools.partial(jax.jit, static_argnames=("num_classes", "epochs", "batch_size"))
def _fit(key, x, y, lr, momentum, weight_decay, *, num_classes, epochs, batch_size):
    n, dim = x.shape
    steps_per_epoch = n // batch_size
    schedule = optax.cosine_decay_schedule(lr, epochs * steps_per_epoch)
    tx = optax.chain(
        # Coupled L2 on the weights only, as PyTorch SGD(weight_decay) applied to a probe.
        optax.add_decayed_weights(weight_decay, mask={"kernel": True, "bias": False}),
        optax.sgd(schedule, momentum=momentum),
    )
    # Zero init: the problem is convex, so the seed only decides the minibatch order.
    params = {
        "kernel": jnp.zeros((dim, num_classes), jnp.float32),
        "bias": jnp.zeros((num_classes,), jnp.float32),
    }

    def loss_fn(p, xb, yb):
        logits = linear_logits(p, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def step(carry, idx):
        p, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, x[idx], y[idx])
        updates, opt_state = tx.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), loss

    def epoch(carry, e):
        order = jax.random.permutation(jax.random.fold_in(key, e), n)
        batches = order[: steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)
        carry, losses = jax.lax.scan(step, carry, batches)
        return carry, losses.mean()

    (params, _), epoch_losses = jax.lax.scan(epoch, (params, tx.init(params)), jnp.arange(epochs))
    return params, epoch_losses


def fit_linear_probe(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    *,
    num_classes: int,
    epochs: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int | None = 512,
    seed: int = 0,
) -> tuple[Params, np.ndarray]:
    """Trains a multinomial logistic regression on standardised frozen features.

    Minimises ``mean CE(x_std @ W + b, y) + weight_decay / 2 * ||W||^2`` with momentum SGD
    (cosine schedule from ``lr`` to 0), minibatches reshuffled each epoch (the remainder
    ``N mod batch_size`` is dropped from each epoch, a different part every epoch).

    Args:
      train_feats: ``[N, F]`` frozen training features.
      train_labels: ``[N]`` integer labels in ``[0, num_classes)``.
      num_classes: number of classes ``C``.
      epochs: passes over the training set.
      lr: peak learning rate.
      momentum: SGD momentum.
      weight_decay: L2 coefficient on the weights (the bias is not decayed).
      batch_size: minibatch size; ``None`` or ``>= N`` means full-batch gradient descent.
      seed: seed of the minibatch order; equal seeds give identical results.

    Returns:
      ``(params, epoch_losses)``: ``params`` = ``{'kernel', 'bias'}`` acting on RAW features
      (the standardisation is folded in), ``epoch_losses`` = mean training loss per epoch.

    References:
      Chen et al., ICML 2020, App. B.6; Kolesnikov et al., CVPR 2019.
    """
    x = np.asarray(train_feats, np.float32)
    y = np.asarray(train_labels)
    if x.ndim != 2 or y.shape != x.shape[:1]:
        raise ValueError(
            f"train_feats must be [N, F] and train_labels [N], got {x.shape}, {y.shape}"
        )
    if x.shape[0] < 1:
        raise ValueError("train_feats is empty")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"train_labels must be integers in [0, {num_classes}), got dtype {y.dtype} with "
            f"range [{y.min()}, {y.max()}]"
        )
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not lr > 0 or not 0 <= momentum < 1 or not weight_decay >= 0:
        raise ValueError(
            f"need lr > 0, 0 <= momentum < 1, weight_decay >= 0; got {lr}, {momentum}, "
            f"{weight_decay}"
        )
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
    n = x.shape[0]
    batch_size = n if batch_size is None else min(batch_size, n)
    mean, std = feature_standardisation(x)
    params, losses = _fit(
        jax.random.key(seed),
        jnp.asarray((x - mean) / std),
        jnp.asarray(y, jnp.int32),
        jnp.float32(lr),
        jnp.float32(momentum),
        jnp.float32(weight_decay),
        num_classes=int(num_classes),
        epochs=int(epochs),
        batch_size=int(batch_size),
    )
    kernel = np.asarray(params["kernel"], np.float64)
    bias = np.asarray(params["bias"], np.float64)
    mean, std = mean.astype(np.float64), std.astype(np.float64)
    # (x - m) / s @ W + b == x @ (W / s) + (b - (m / s) @ W)
    raw = {"kernel": kernel / std[:, None], "bias": bias - (mean / std) @ kernel}
    return {k: v.astype(np.float32) for k, v in raw.items()}, np.asarray(losses)


def linear_probe(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    test_labels: np.ndarray,
    *,
    num_classes: int,
    epochs: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int | None = 512,
    seed: int = 0,
    test_mask: np.ndarray | None = None,
) -> dict[str, float]:
    """Linear-probe accuracy: fit on the training features, score the test features.

    Args:
      train_feats, train_labels: ``[N, F]`` / ``[N]`` training set.
      test_feats, test_labels: ``[M, F]`` / ``[M]`` test set.
      num_classes, epochs, lr, momentum, weight_decay, batch_size, seed: as in
        ``fit_linear_probe``.
      test_mask: optional ``[M]`` bool of valid test rows (padding excluded from counts).

    Returns:
      ``{'top1', 'top5'}`` test accuracy in percent, plus ``'train_top1'`` (percent) and
      ``'train_loss'`` (mean loss of the last epoch) to spot under- or over-fitting.

    References:
      Zhang et al., ECCV 2016; Chen et al., ICML 2020, App. B.6.
    """
    test_x = np.asarray(test_feats, np.float32)
    if test_x.ndim != 2 or test_x.shape[1] != np.shape(train_feats)[-1]:
        raise ValueError(
            f"test_feats must be [M, {np.shape(train_feats)[-1]}], got shape {test_x.shape}"
        )
    params, losses = fit_linear_probe(
        train_feats,
        train_labels,
        num_classes=num_classes,
        epochs=epochs,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        batch_size=batch_size,
        seed=seed,
    )
    scores = lambda x: np.asarray(x, np.float64) @ params["kernel"] + params["bias"]
    test_scores, train_scores = scores(test_x), scores(train_feats)
    result = topk_accuracy(test_scores, np.asarray(test_labels), mask=test_mask)
    result["train_top1"] = topk_accuracy(train_scores, np.asarray(train_labels))["top1"]
    result["train_loss"] = float(losses[-1])
    return result
