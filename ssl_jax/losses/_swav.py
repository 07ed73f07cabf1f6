"""SwAV: online equal-partition codes (Sinkhorn-Knopp) and the swapped-prediction loss.

Both take ``axis_name`` (see ``_distributed``). The Sinkhorn marginals are sums over the
batch, so inside ``shard_map``/``pmap`` they are ``psum``'ed and the codes of each device's
rows equal those the single-device algorithm gives on the global batch.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax.losses import _validate
from ssl_jax.losses._distributed import compute_dtype, global_sum, num_devices


def _logsumexp_over_batch(x: jax.Array, axis_name: str | None) -> jax.Array:
    """``log sum_rows exp(x)`` per column over the global batch, ``[1, K]``."""
    m = jnp.max(x, axis=0, keepdims=True)
    if axis_name is not None:
        m = lax.pmax(m, axis_name)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    s = jnp.sum(jnp.exp(x - m), axis=0, keepdims=True)
    if axis_name is not None:
        s = lax.psum(s, axis_name)
    return m + jnp.log(s)


def sinkhorn_knopp(
    scores: jax.Array,
    *,
    epsilon: float = 0.05,
    num_iters: int = 3,
    axis_name: str | None = None,
) -> jax.Array:
    """Soft codes that split the batch equally over the prototypes (SwAV's Sinkhorn-Knopp).

    Starts from ``Q = exp(scores / epsilon)`` normalised to sum to 1, then alternately
    rescales prototype marginals to ``1/K`` and sample marginals to ``1/B`` (B = global batch),
    and returns ``B * Q``: every row sums to 1 and, as the iterations converge, every column
    to ``B/K``. The iterations run in the log domain; this is the same algorithm without
    the ``exp`` overflow of large ``scores / epsilon``.

    No gradient flows: the codes are targets, computed "without backpropagation" as in the
    paper; letting the loss shape its own targets would let it lower itself by moving the
    targets instead of the predictions.

    Args:
      scores: prototype scores ``[B, K]`` (``z @ C.T`` of normalised z and prototypes C; per
        device rows when ``axis_name`` is set).
      epsilon: entropic regularisation > 0 (smaller = sharper codes).
      num_iters: Sinkhorn iterations >= 1.
      axis_name: mapped axis whose devices hold the rest of the batch, or None.

    Returns:
      Codes ``[B, K]`` for the given rows, float32 (or wider).

    References:
      Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments", NeurIPS 2020 (Sec. 3.1, Alg. 1 ``distributed_sinkhorn``); Cuturi,
      "Sinkhorn Distances", NeurIPS 2013.
    """
    _validate.check_rank(scores, 2, "scores")
    _validate.check_min_batch(scores, 1, "scores")
    _validate.check_min_batch(scores, 1, "scores", axis=1)
    _validate.check_positive(epsilon, "epsilon")
    if not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"num_iters must be an integer >= 1, got {num_iters!r}")
    # stop_gradient: the codes are targets (see the docstring), not a differentiable output.
    scores = lax.stop_gradient(scores.astype(compute_dtype(scores)))
    log_b = jnp.log(scores.shape[0] * num_devices(axis_name)).astype(scores.dtype)
    log_k = jnp.log(scores.shape[1]).astype(scores.dtype)

    log_q = scores / epsilon
    total = jax.nn.logsumexp(_logsumexp_over_batch(log_q, axis_name))
    log_q = log_q - total

    def body(_, log_q):
        log_q = log_q - _logsumexp_over_batch(log_q, axis_name) - log_k
        return log_q - jax.nn.logsumexp(log_q, axis=1, keepdims=True) - log_b

    log_q = lax.fori_loop(0, num_iters, body, log_q)
    return jnp.exp(log_q + log_b)


def _check_scores(scores, num_high_res, fn: str) -> list[jax.Array]:
    if hasattr(scores, "shape"):
        raise ValueError(f"{fn}: scores must be a list of [B, K] arrays, one per crop")
    scores = list(scores)
    if len(scores) < 2:
        raise ValueError(f"{fn} needs at least 2 crops, got {len(scores)}")
    for i, s in enumerate(scores):
        _validate.check_rank(s, 2, f"scores[{i}]")
        _validate.check_same_shape(scores[0], s, ("scores[0]", f"scores[{i}]"))
    _validate.check_min_batch(scores[0], 1, "scores[0]")
    if not isinstance(num_high_res, int) or not 1 <= num_high_res <= len(scores):
        raise ValueError(
            f"num_high_res must be an integer in [1, {len(scores)}] (the number of crops), "
            f"got {num_high_res!r}"
        )
    return scores


def _check_per_coded_crop(arrays, num_high_res, name, *, k: int, rows: int | None = None):
    arrays = list(arrays)
    if len(arrays) != num_high_res:
        raise ValueError(
            f"{name} needs one array per high-resolution crop ({num_high_res}), got {len(arrays)}"
        )
    for i, a in enumerate(arrays):
        _validate.check_rank(a, 2, f"{name}[{i}]")
        if a.shape[1] != k or (rows is not None and a.shape[0] != rows):
            want = f"[{rows}, {k}]" if rows is not None else f"{k} prototypes"
            raise ValueError(f"{name}[{i}] must have {want}, got shape {a.shape}")
    return arrays


def swav_codes(
    scores: Sequence[jax.Array],
    *,
    num_high_res: int = 2,
    epsilon: float = 0.05,
    num_iters: int = 3,
    queue_scores: Sequence[jax.Array] | None = None,
    axis_name: str | None = None,
) -> list[jax.Array]:
    """The Sinkhorn-Knopp codes of the first ``num_high_res`` crops (SwAV's targets).

    Arguments as in :func:`swav_loss`. With ``queue_scores``, crop i's Sinkhorn input is
    its queue's scores followed by its batch rows, and only the batch rows' codes are
    returned. No gradient flows (:func:`sinkhorn_knopp`).

    Returns:
      One ``[B, K]`` array per high-resolution crop.
    """
    scores = _check_scores(scores, num_high_res, "swav_codes")
    return _codes(scores, num_high_res, epsilon, num_iters, queue_scores, axis_name)


def _codes(scores, num_high_res, epsilon, num_iters, queue_scores, axis_name):
    """:func:`swav_codes` of scores already checked."""
    if queue_scores is not None:
        queue_scores = _check_per_coded_crop(
            queue_scores, num_high_res, "queue_scores", k=scores[0].shape[1]
        )
    n = scores[0].shape[0]
    codes = []
    for i in range(num_high_res):
        assign = (
            scores[i]
            if queue_scores is None
            else jnp.concatenate([queue_scores[i].astype(scores[i].dtype), scores[i]], axis=0)
        )
        c = sinkhorn_knopp(assign, epsilon=epsilon, num_iters=num_iters, axis_name=axis_name)
        codes.append(c[-n:])
    return codes


def swav_loss(
    scores: Sequence[jax.Array],
    *,
    num_high_res: int = 2,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    num_iters: int = 3,
    queue_scores: Sequence[jax.Array] | None = None,
    codes: Sequence[jax.Array] | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    """SwAV's swapped prediction: predict each high-resolution crop's codes from other crops.

    For each of the first ``num_high_res`` crops i, codes ``q_i`` come from
    :func:`sinkhorn_knopp` of its scores; every other crop v (high or low resolution)
    predicts them with ``softmax(scores_v / temperature)``. As in the official code, each
    crop's cross entropies are averaged over its ``len(scores) - 1`` predictors, and the
    result over the ``num_high_res`` crops.

    Args:
      scores: one ``[B, K]`` array per crop, raw prototype scores (not divided by the
        temperature), high-resolution crops first, row b of every crop the same image.
      num_high_res: how many leading crops get codes (SwAV's ``crops_for_assign``: 2).
      temperature: softmax temperature of the predictions, > 0.
      epsilon: Sinkhorn entropic regularisation, > 0.
      num_iters: Sinkhorn iterations, >= 1.
      queue_scores: optional, one ``[Q, K]`` array per high-resolution crop: scores of
        embeddings queued from past batches against the CURRENT prototypes. They are put
        before the batch in the Sinkhorn input (more samples to equipartition, for small
        batches), and only the batch rows' codes are used. With ``axis_name`` each device
        passes its own queue, as in the official code.
      codes: optional, the targets already computed (:func:`swav_codes`, one ``[B, K]``
        array per high-resolution crop; they get no gradient). Lets a caller choose
        between Sinkhorn inputs (with or without the queue) under ``lax.cond`` without
        putting the differentiable part of the loss inside the branch. Excludes
        ``queue_scores``.
      axis_name: mapped axis whose devices hold the rest of the batch, or None.

    Returns:
      Scalar: the loss of the global batch.

    References:
      Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments", NeurIPS 2020 (Eq. 1-3; ``main_swav.py`` of facebookresearch/swav).
    """
    scores = _check_scores(scores, num_high_res, "swav_loss")
    _validate.check_positive(temperature, "temperature")
    if codes is None:
        codes = _codes(scores, num_high_res, epsilon, num_iters, queue_scores, axis_name)
    elif queue_scores is not None:
        raise ValueError("pass either codes or queue_scores, not both")
    else:
        codes = _check_per_coded_crop(
            codes, num_high_res, "codes", k=scores[0].shape[1], rows=scores[0].shape[0]
        )
        codes = [lax.stop_gradient(c) for c in codes]

    dtype = compute_dtype(*scores)
    batch = scores[0].shape[0] * num_devices(axis_name)
    log_p = [jax.nn.log_softmax(s.astype(dtype) / temperature, axis=1) for s in scores]
    loss = jnp.zeros((), dtype)
    for i in range(num_high_res):
        sub = sum(-jnp.sum(codes[i] * log_p[v]) for v in range(len(scores)) if v != i)
        loss = loss + sub / batch / (len(scores) - 1)
    return global_sum(loss / num_high_res, axis_name)
