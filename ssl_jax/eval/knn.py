"""Weighted k-nearest-neighbour classification of frozen features (InstDisc / DINO protocol).

Features are L2-normalised; each test point takes the ``k`` training points of highest
cosine similarity ``s`` and every neighbour votes for its class with weight ``exp(s / T)``.
The predicted class is the one with the largest summed vote.

Test queries are processed in fixed-size chunks (one compilation, memory ``chunk x N``), so
a 50k x 10k (or 1.28M-bank) evaluation fits on one accelerator. With a ``Mesh`` each chunk is
split over the ``data`` axis with ``shard_map`` while the training bank is replicated; every
device computes its rows exactly as the single-device path does.

References:
  Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
  CVPR 2018 (weighted kNN, T = 0.07). Caron et al., "Emerging Properties in
  Self-Supervised Vision Transformers", ICCV 2021 (``eval_knn.py``: k = 20/200).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax.eval._accuracy import topk_accuracy

_EPS = 1e-12


def l2_normalise(x: jax.Array) -> jax.Array:
    """Rows of ``x`` scaled to unit L2 norm (zero rows stay zero).

    Args:
      x: ``[N, D]`` features.

    Returns:
      ``[N, D]`` float32 array with unit-norm rows.
    """
    x = jnp.asarray(x, jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def _neighbours(bank: jax.Array, queries: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    sims = l2_normalise(queries) @ bank.T  # [m, N]; bank is already normalised
    return jax.lax.top_k(sims, k)


def _vote(
    sims: jax.Array, nbr_labels: jax.Array, *, num_classes: int, temperature: float
) -> jax.Array:
    weights = jnp.exp(sims / temperature)  # [m, k]
    # Scatter-add keeps memory at [m, C]; a one-hot of [m, k, C] would not fit for C = 1000.
    add_row = lambda lab, w: jnp.zeros((num_classes,), jnp.float32).at[lab].add(w)
    return jax.vmap(add_row)(nbr_labels, weights)


def _chunk_scores(bank, bank_labels, queries, *, k, num_classes, temperature):
    sims, idx = _neighbours(bank, queries, k)
    return _vote(sims, bank_labels[idx], num_classes=num_classes, temperature=temperature)


def _chunk_neighbours(bank, queries, *, k):
    return _neighbours(bank, queries, k)


@functools.lru_cache(maxsize=32)
def _compiled(kind: str, mesh: Mesh | None, axis: str, statics: tuple):
    """Jitted chunk function; with a mesh, rows are split over ``axis`` by ``shard_map``."""
    fn = _chunk_scores if kind == "scores" else _chunk_neighbours
    fn = functools.partial(fn, **dict(statics))
    n_bank = 2 if kind == "scores" else 1
    if mesh is None:
        return jax.jit(fn)
    sharded = jax.shard_map(
        fn,
        mesh=mesh,
        in_specs=(P(),) * n_bank + (P(axis),),
        out_specs=P(axis),
    )
    # Replicated outputs are readable on every process (multi-host) without a gather step.
    return jax.jit(sharded, out_shardings=NamedSharding(mesh, P()))


def _validate(train_feats, train_labels, test_feats, k, mask, num_classes=None, temperature=1):
    if np.ndim(train_feats) != 2 or np.ndim(test_feats) != 2:
        raise ValueError(
            f"train_feats and test_feats must be [N, D] and [M, D], got shapes "
            f"{np.shape(train_feats)} and {np.shape(test_feats)}"
        )
    n, d = np.shape(train_feats)
    if np.shape(test_feats)[1] != d:
        raise ValueError(
            f"train_feats and test_feats must have the same feature size, got {d} and "
            f"{np.shape(test_feats)[1]}"
        )
    if train_labels is not None and np.shape(train_labels) != (n,):
        raise ValueError(
            f"train_labels must have shape ({n},) to match train_feats, got "
            f"{np.shape(train_labels)}"
        )
    if np.shape(test_feats)[0] < 1:
        raise ValueError("test_feats is empty: need at least one query row")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the training-bank size), got {k}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if mask is not None and np.shape(mask) != (np.shape(test_feats)[0],):
        raise ValueError(
            f"mask must have shape ({np.shape(test_feats)[0]},) (one flag per test row), got "
            f"{np.shape(mask)}"
        )


def _chunks(test_feats: np.ndarray, chunk_size: int, mesh: Mesh | None, axis: str):
    """Yields fixed-shape device chunks of the test queries (last one zero-padded)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n_dev = 1 if mesh is None else mesh.shape[axis]
    m = test_feats.shape[0]
    # Never pad a small test set up to a large chunk; keep every chunk divisible by n_dev.
    chunk_size = min(chunk_size, max(m, 1))
    chunk_size = -(-chunk_size // n_dev) * n_dev
    for start in range(0, m, chunk_size):
        part = test_feats[start : start + chunk_size]
        if part.shape[0] < chunk_size:
            pad = np.zeros((chunk_size - part.shape[0], part.shape[1]), part.dtype)
            part = np.concatenate([part, pad])
        if mesh is None:
            yield jnp.asarray(part)
        else:
            sharding = NamedSharding(mesh, P(axis))
            yield jax.make_array_from_callback(part.shape, sharding, lambda i, p=part: p[i])


def _replicate(x: jax.Array, mesh: Mesh | None) -> jax.Array:
    if mesh is None:
        return jnp.asarray(x)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, NamedSharding(mesh, P()), lambda i: x[i])


def _host(x: jax.Array) -> np.ndarray:
    # Outputs are replicated, so the first local shard holds the whole chunk.
    return np.asarray(x.addressable_data(0))


def knn_neighbours(
    train_feats: jax.Array,
    test_feats: jax.Array,
    *,
    k: int,
    chunk_size: int = 512,
    mesh: Mesh | None = None,
    data_axis: str = "data",
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar training points of every test point.

    Args:
      train_feats: ``[N, D]`` training-bank features (normalised inside).
      test_feats: ``[M, D]`` query features (normalised inside).
      k: number of neighbours, ``1 <= k <= N``.
      chunk_size: queries per compiled call (rounded up to a multiple of the mesh size).
      mesh: optional ``Mesh``; query chunks are split over ``data_axis``, the bank replicated.
      data_axis: mesh axis name for the queries.

    Returns:
      ``(similarities [M, k], indices [M, k])`` as numpy, most similar first.

    References:
      Wu et al., CVPR 2018; Caron et al., ICCV 2021 (``eval_knn.py``).
    """
    _validate(train_feats, None, test_feats, k, None)
    test_np = np.asarray(test_feats, np.float32)
    bank = _replicate(l2_normalise(np.asarray(train_feats, np.float32)), mesh)
    fn = _compiled("neighbours", mesh, data_axis, (("k", int(k)),))
    outs = [fn(bank, q) for q in _chunks(test_np, chunk_size, mesh, data_axis)]
    m = test_np.shape[0]
    sims = np.concatenate([_host(s) for s, _ in outs])[:m]
    idx = np.concatenate([_host(i) for _, i in outs])[:m]
    return sims, idx


def knn_classify(
    train_feats: jax.Array,
    train_labels: jax.Array,
    test_feats: jax.Array,
    *,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    chunk_size: int = 512,
    mask: jax.Array | None = None,
    mesh: Mesh | None = None,
    data_axis: str = "data",
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted kNN prediction: ``score_c = sum over top-k neighbours of class c of exp(s/T)``.

    Args:
      train_feats: ``[N, D]`` frozen training features (L2-normalised inside).
      train_labels: ``[N]`` integer labels in ``[0, num_classes)``.
      test_feats: ``[M, D]`` frozen test features (L2-normalised inside).
      num_classes: number of classes ``C``.
      k: neighbours per query, ``1 <= k <= N`` (200 in InstDisc / DINO for ImageNet).
      temperature: vote temperature ``T`` (0.07).
      chunk_size: test queries per compiled call; memory is ``chunk_size x N`` similarities.
      mask: optional ``[M]`` bool, False on padding rows; those get prediction -1, scores 0.
      mesh: optional ``Mesh``: each chunk is split over ``data_axis`` (bank replicated); the
        result equals the single-device one.
      data_axis: mesh axis name for the queries.

    Returns:
      ``(top1_pred [M] int32, class_scores [M, C] float32)`` as numpy arrays.

    References:
      Wu et al., CVPR 2018, Sec. 3.4; Caron et al., ICCV 2021 (``eval_knn.py``).
    """
    _validate(train_feats, train_labels, test_feats, k, mask, num_classes, temperature)
    labels = np.asarray(train_labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"train_labels must lie in [0, {num_classes}), got range "
            f"[{labels.min()}, {labels.max()}]"
        )
    test_np = np.asarray(test_feats, np.float32)
    bank = _replicate(l2_normalise(np.asarray(train_feats, np.float32)), mesh)
    bank_labels = _replicate(labels.astype(np.int32), mesh)
    statics = (
        ("k", int(k)),
        ("num_classes", int(num_classes)),
        ("temperature", float(temperature)),
    )
    fn = _compiled("scores", mesh, data_axis, statics)
    outs = [fn(bank, bank_labels, q) for q in _chunks(test_np, chunk_size, mesh, data_axis)]
    scores = np.concatenate([_host(o) for o in outs])[: test_np.shape[0]]
    pred = scores.argmax(axis=1).astype(np.int32)
    if mask is not None:
        valid = np.asarray(mask, bool)
        pred = np.where(valid, pred, -1).astype(np.int32)
        scores = np.where(valid[:, None], scores, 0.0).astype(np.float32)
    return pred, scores


def knn_accuracy(
    train_feats: jax.Array,
    train_labels: jax.Array,
    test_feats: jax.Array,
    test_labels: jax.Array,
    *,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    chunk_size: int = 512,
    mask: jax.Array | None = None,
    mesh: Mesh | None = None,
    data_axis: str = "data",
) -> dict[str, float]:
    """Weighted-kNN top-1 / top-5 accuracy (percent) of the test set, padding rows excluded.

    Args:
      train_feats, train_labels, test_feats: as in ``knn_classify``.
      test_labels: ``[M]`` integer test labels.
      num_classes, k, temperature, chunk_size, mesh, data_axis: as in ``knn_classify``.
      mask: optional ``[M]`` bool; only True rows are counted.

    Returns:
      ``{'top1': %, 'top5': %}``; a class needs at least one neighbour's vote to count, so
      top-5 equals top-1 for ``k = 1`` (DINO gets the same with ``min(5, k)``).

    References:
      Wu et al., CVPR 2018; Caron et al., ICCV 2021 (``eval_knn.py``).
    """
    if np.shape(test_labels) != (np.shape(test_feats)[0],):
        raise ValueError(
            f"test_labels must have shape ({np.shape(test_feats)[0]},), got {np.shape(test_labels)}"
        )
    _, scores = knn_classify(
        train_feats,
        train_labels,
        test_feats,
        num_classes=num_classes,
        k=k,
        temperature=temperature,
        chunk_size=chunk_size,
        mask=mask,
        mesh=mesh,
        data_axis=data_axis,
    )
    return topk_accuracy(scores, np.asarray(test_labels), mask=mask, votes=True)
