"""Instance-discrimination objectives: SimCLR NT-Xent, MoCo v2 InfoNCE, MoCo v3, NNCLR.

Also the two non-differentiable pieces those methods keep as auxiliary state: the MoCo
FIFO queue of keys and the NNCLR support-set lookup.

Losses that reduce over the batch take ``axis_name`` (see ``_distributed``): None when the
arrays are the global batch (one device, or ``jax.jit`` over a sharded ``Mesh``); the mapped
axis name inside ``shard_map``/``pmap``, where each device returns the global loss value and
the gradient of that global loss with respect to its own rows.
"""

import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax.losses import _validate
from ssl_jax.losses._distributed import (
    batch_offset,
    compute_dtype,
    gather_batch,
    global_sum,
    num_devices,
)


def l2_normalize(x: jax.Array, *, eps: float = 1e-12) -> jax.Array:
    """Rows scaled to unit L2 norm: ``x / max(||x||, eps)``, as torch's ``F.normalize``."""
    sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    return x * lax.rsqrt(jnp.maximum(sq, eps * eps))


def _check_global_batch(x: jax.Array, minimum: int, name: str, axis_name: str | None) -> None:
    _validate.check_min_batch(x, 1, name)
    total = x.shape[0] * num_devices(axis_name)
    if total < minimum:
        raise ValueError(
            f"{name} needs a global batch of at least {minimum}, got {total} "
            f"({x.shape[0]} per device x {num_devices(axis_name)} devices)"
        )


def _cross_entropy_sum(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Sum over rows of ``-log softmax(logits)[label]``."""
    picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return jnp.sum(jax.nn.logsumexp(logits, axis=1) - picked)


def _gathered_batch_ce(
    anchors: jax.Array, others: jax.Array, temperature: float, dtype, axis_name: str | None
) -> jax.Array:
    """Mean over the global batch of the cross-entropy of each unit anchor against all unit
    ``others`` gathered across devices, the positive being the row of the same image."""
    n = anchors.shape[0]
    labels = batch_offset(n, axis_name) + jnp.arange(n)
    a = l2_normalize(anchors.astype(dtype))
    b = gather_batch(l2_normalize(others.astype(dtype)), axis_name)
    return _cross_entropy_sum(a @ b.T / temperature, labels) / b.shape[0]


def nt_xent_loss(
    z1: jax.Array,
    z2: jax.Array,
    *,
    temperature: float = 0.1,
    axis_name: str | None = None,
) -> jax.Array:
    """SimCLR's normalised temperature-scaled cross entropy over the 2N views.

    Each of the 2N embeddings is an anchor; its positive is the other view of the same image
    and its negatives are the other 2N-2 embeddings (its own similarity is masked out).
    Embeddings are L2-normalised here, so logits are cosine similarities / temperature.

    Args:
      z1: first-view projections ``[N, D]`` (per-device rows when ``axis_name`` is set).
      z2: second-view projections ``[N, D]``, row i the same image as ``z1[i]``.
      temperature: softmax temperature tau > 0. The paper's ImageNet default is 0.1; its
        CIFAR-10 runs use 0.5.
      axis_name: mapped axis to gather negatives over inside ``shard_map``/``pmap``, or None.

    Returns:
      Scalar: the mean over all 2N anchors of the global batch.

    References:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
      ICML 2020 (Eq. 1 and Alg. 1).
    """
    _validate.check_rank(z1, 2, "z1")
    _validate.check_same_shape(z1, z2, ("z1", "z2"))
    _validate.check_positive(temperature, "temperature")
    _check_global_batch(z1, 2, "z1", axis_name)
    dtype = compute_dtype(z1, z2)
    n = z1.shape[0]
    anchors = jnp.concatenate(
        [l2_normalize(z1.astype(dtype)), l2_normalize(z2.astype(dtype))], axis=0
    )
    # Keys ordered [all first views; all second views] of the global batch.
    keys = jnp.concatenate(
        [gather_batch(anchors[:n], axis_name), gather_batch(anchors[n:], axis_name)], axis=0
    )
    big_n = keys.shape[0] // 2
    rows = batch_offset(n, axis_name) + jnp.arange(n)
    self_idx = jnp.concatenate([rows, rows + big_n])
    pos_idx = jnp.concatenate([rows + big_n, rows])
    logits = anchors @ keys.T / temperature
    is_self = jnp.arange(2 * big_n)[None, :] == self_idx[:, None]
    logits = jnp.where(is_self, -jnp.inf, logits)
    return global_sum(_cross_entropy_sum(logits, pos_idx) / (2 * big_n), axis_name)


def info_nce_loss(
    query: jax.Array,
    positive_key: jax.Array,
    negatives: jax.Array,
    *,
    temperature: float = 0.2,
    axis_name: str | None = None,
) -> jax.Array:
    """MoCo's InfoNCE: one positive key per query against a shared set (queue) of negatives.

    Logits are ``[q.k+, q.n_1, ..., q.n_K] / temperature`` after L2-normalising queries, keys
    and negatives, and the target is index 0. MoCo treats keys and the queue as constants
    (they come from the momentum encoder, whose parameters are not differentiated); this
    function does not stop their gradient itself, so it is also the general InfoNCE.

    Args:
      query: online-encoder projections ``[B, D]``.
      positive_key: momentum-encoder projections of the other view ``[B, D]``.
      negatives: queue of past keys ``[K, D]``, shared by every query.
      temperature: tau > 0; MoCo v2 uses 0.2 (MoCo v1: 0.07).
      axis_name: set inside ``shard_map``/``pmap`` so the value is the global-batch mean and
        gradients follow the contract of ``_distributed`` (no gathering is needed).

    Returns:
      Scalar: mean cross entropy over the global batch.

    References:
      He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR
      2020 (Eq. 1, Alg. 1); Chen et al., "Improved Baselines with Momentum Contrastive
      Learning", arXiv:2003.04297 (MoCo v2).
    """
    _validate.check_rank(query, 2, "query")
    _validate.check_same_shape(query, positive_key, ("query", "positive_key"))
    _validate.check_rank(negatives, 2, "negatives")
    if negatives.shape[1] != query.shape[1]:
        raise ValueError(
            f"negatives must have the feature size of query ({query.shape[1]}), "
            f"got shape {negatives.shape}"
        )
    _validate.check_min_batch(negatives, 1, "negatives")
    _validate.check_positive(temperature, "temperature")
    _check_global_batch(query, 1, "query", axis_name)
    dtype = compute_dtype(query, positive_key, negatives)
    q = l2_normalize(query.astype(dtype))
    k = l2_normalize(positive_key.astype(dtype))
    neg = l2_normalize(negatives.astype(dtype))
    logits = jnp.concatenate([jnp.sum(q * k, axis=1, keepdims=True), q @ neg.T], axis=1)
    logits = logits / temperature
    labels = jnp.zeros(q.shape[0], jnp.int32)
    total = q.shape[0] * num_devices(axis_name)
    return global_sum(_cross_entropy_sum(logits, labels) / total, axis_name)


def moco_v3_loss(
    q1: jax.Array,
    q2: jax.Array,
    k1: jax.Array,
    k2: jax.Array,
    *,
    temperature: float = 0.2,
    axis_name: str | None = None,
) -> jax.Array:
    """MoCo v3's symmetrised contrastive loss with in-batch keys.

    ``ctr(q, k)``: query i's positive is key i of the other view, its negatives the other
    keys of the global batch; the cross entropy is multiplied by ``2 * temperature`` as in
    the official code. The loss is ``ctr(q1, k2) + ctr(q2, k1)``. Keys come from the
    momentum encoder; like :func:`info_nce_loss` this function does not stop their gradient.

    Args:
      q1: predictor outputs of view 1 ``[N, D]`` (per-device rows when ``axis_name`` set).
      q2: predictor outputs of view 2 ``[N, D]``.
      k1: momentum-encoder outputs of view 1 ``[N, D]``.
      k2: momentum-encoder outputs of view 2 ``[N, D]``.
      temperature: tau > 0; 0.2 for ViT (the official ResNet-50 recipe uses 1.0).
      axis_name: mapped axis to gather keys over inside ``shard_map``/``pmap``, or None.

    Returns:
      Scalar: the sum of the two directions, each a mean over the global batch.

    References:
      Chen, Xie and He, "An Empirical Study of Training Self-Supervised Vision Transformers",
      ICCV 2021 (Alg. 1; ``moco/builder.py`` of facebookresearch/moco-v3).
    """
    _validate.check_rank(q1, 2, "q1")
    for x, name in ((q2, "q2"), (k1, "k1"), (k2, "k2")):
        _validate.check_same_shape(q1, x, ("q1", name))
    _validate.check_positive(temperature, "temperature")
    _check_global_batch(q1, 1, "q1", axis_name)
    dtype = compute_dtype(q1, q2, k1, k2)

    def ctr(q: jax.Array, k: jax.Array) -> jax.Array:
        return _gathered_batch_ce(q, k, temperature, dtype, axis_name) * (2 * temperature)

    return global_sum(ctr(q1, k2) + ctr(q2, k1), axis_name)


def queue_update(
    queue: jax.Array,
    ptr: jax.Array | int,
    keys: jax.Array,
    *,
    axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Enqueue a batch of keys into a FIFO ring buffer, overwriting the oldest entries.

    Keys are written at rows ``(ptr + i) mod K``, so the queue size K need not be a multiple
    of the batch size (the official MoCo code asserts it is). Keys are stored as given (MoCo
    stores normalised keys) and as constants: the queue is state, not a function of the
    current parameters.

    Args:
      queue: ``[K, D]`` buffer.
      ptr: scalar integer, the row the next key goes to.
      keys: ``[B, D]`` with ``B * num_devices <= K``.
      axis_name: inside ``shard_map``/``pmap``, gather every device's keys first so all
        devices keep identical queues (MoCo's ``concat_all_gather``); None otherwise.

    Returns:
      ``(new_queue, new_ptr)`` with ``new_ptr = (ptr + B * num_devices) mod K``.

    References:
      He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR
      2020 (Sec. 3.2, "Dictionary as a queue").
    """
    _validate.check_rank(queue, 2, "queue")
    _validate.check_rank(keys, 2, "keys")
    _validate.check_rank(ptr, 0, "ptr")
    if keys.shape[1] != queue.shape[1]:
        raise ValueError(
            f"keys must have the feature size of queue ({queue.shape[1]}), got {keys.shape}"
        )
    _validate.check_min_batch(keys, 1, "keys")
    size = queue.shape[0]
    batch = keys.shape[0] * num_devices(axis_name)
    if batch > size:
        raise ValueError(f"queue of {size} rows cannot hold a batch of {batch} keys")
    ptr = jnp.asarray(ptr)
    if not jnp.issubdtype(ptr.dtype, jnp.integer):
        raise ValueError(f"ptr must be an integer, got dtype {ptr.dtype}")
    # stop_gradient: the queue is state carried across steps, never a differentiable output.
    keys = lax.stop_gradient(gather_batch(keys, axis_name)).astype(queue.dtype)
    rows = (ptr + jnp.arange(batch, dtype=ptr.dtype)) % size
    return queue.at[rows].set(keys, unique_indices=True), (ptr + batch) % size


def nearest_neighbour(queue: jax.Array, z: jax.Array) -> jax.Array:
    """NNCLR support-set lookup: for each row of ``z`` the queue entry of highest cosine.

    Args:
      queue: support set ``[K, D]`` of past embeddings.
      z: queries ``[B, D]``.

    Returns:
      ``[B, D]`` rows of ``queue`` (as stored, not renormalised), with no gradient.

    References:
      Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive
      Learning of Visual Representations", ICCV 2021 (Eq. 2).
    """
    _validate.check_rank(queue, 2, "queue")
    _validate.check_rank(z, 2, "z")
    if z.shape[1] != queue.shape[1]:
        raise ValueError(
            f"z must have the feature size of queue ({queue.shape[1]}), got shape {z.shape}"
        )
    _validate.check_min_batch(queue, 1, "queue")
    dtype = compute_dtype(queue, z)
    sim = l2_normalize(z.astype(dtype)) @ l2_normalize(queue.astype(dtype)).T
    # stop_gradient: the neighbour stands in for the positive as a fixed target; NNCLR does
    # not back-propagate into the support set (it is state, filled from past batches).
    return lax.stop_gradient(queue[jnp.argmax(sim, axis=1)])
