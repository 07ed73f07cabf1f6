"""NNCLR's contrastive loss: nearest-neighbour positives against the other view's predictions.

The support-set pieces (the FIFO queue and the nearest-neighbour lookup) are
:func:`ssl_jax.losses.queue_update` and :func:`ssl_jax.losses.nearest_neighbour`.
"""

import functools

import jax

from ssl_jax.losses import _validate
from ssl_jax.losses._contrastive import _check_global_batch, _gathered_batch_ce
from ssl_jax.losses._distributed import compute_dtype, global_sum


def nnclr_loss(
    nn1: jax.Array,
    nn2: jax.Array,
    p1: jax.Array,
    p2: jax.Array,
    *,
    temperature: float = 0.1,
    axis_name: str | None = None,
) -> jax.Array:
    """NNCLR's symmetric loss, ``(ctr(nn1, p2) + ctr(nn2, p1)) / 2``.

    ``ctr(a, b)``: for each row ``i``, cross entropy of ``softmax_k(a_i . b_k / tau)`` with
    target ``k = i`` over the ``n`` rows of ``b`` in the global batch (Eq. 2 of the paper with
    the prediction head: ``a_i = NN(z_i, Q)``, the support-set neighbour of view 1's
    projection, ``b_k = p_k^+``, view 2's predictions). Rows are L2-normalised here, so logits
    are cosine similarities / temperature. The neighbours are the positives' stand-ins and
    come from the support set (state, no gradient: :func:`nearest_neighbour` already stops
    it); gradients reach the model through the predictions.

    Args:
      nn1: support-set neighbours of view 1's projections ``[N, D]`` (per-device rows when
        ``axis_name`` is set).
      nn2: neighbours of view 2's projections ``[N, D]``.
      p1: predictions of view 1 ``[N, D]``.
      p2: predictions of view 2 ``[N, D]``.
      temperature: tau > 0 (0.1 in the paper).
      axis_name: mapped axis to gather predictions over inside ``shard_map``/``pmap``, or
        None when the arrays are the global batch.

    Returns:
      Scalar: the mean of the two directions, each a mean over the global batch.

    References:
      Dwibedi, Aytar, Tompson, Sermanet & Zisserman, "With a Little Help from My Friends:
      Nearest-Neighbor Contrastive Learning of Visual Representations", ICCV 2021 (Eq. 2,
      Sec. 3.2: prediction head, symmetric loss).
    """
    _validate.check_rank(nn1, 2, "nn1")
    for x, name in ((nn2, "nn2"), (p1, "p1"), (p2, "p2")):
        _validate.check_same_shape(nn1, x, ("nn1", name))
    _validate.check_positive(temperature, "temperature")
    _check_global_batch(nn1, 1, "nn1", axis_name)
    dtype = compute_dtype(nn1, nn2, p1, p2)
    ctr = functools.partial(
        _gathered_batch_ce, temperature=temperature, dtype=dtype, axis_name=axis_name
    )
    return global_sum((ctr(nn1, p2) + ctr(nn2, p1)) / 2, axis_name)
