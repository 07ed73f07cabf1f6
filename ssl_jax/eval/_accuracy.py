"""Top-k accuracy of a score matrix, shared by the kNN and linear-probe evaluations."""

import numpy as np


def topk_accuracy(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    votes: bool = False,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy in percent over the valid rows of a ``[M, C]`` score matrix.

    Args:
      scores: ``[M, C]`` class scores (higher is better).
      labels: ``[M]`` integer labels in ``[0, C)`` (checked on the valid rows).
      mask: optional ``[M]`` bool of valid rows (padding excluded from the count).
      votes: the scores are vote totals (kNN): a class without votes (score <= 0) is never a
        hit, so with fewer than 5 voted classes (e.g. k = 1) top-5 is not inflated by
        whichever zero-vote classes the tie-breaking happens to rank first.

    Raises:
      ValueError: wrong shapes, no valid rows, or a valid row's label outside ``[0, C)``.

    Returns:
      ``{'top1': %, 'top5': %}``; top-5 uses ``min(5, C)`` classes. On tied scores the lower
      class index ranks first (as ``argmax``).

    References:
      Russakovsky et al., "ImageNet Large Scale Visual Recognition Challenge", IJCV 2015.
    """
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(
            f"scores must be [M, C] and labels [M], got {scores.shape} and {labels.shape}"
        )
    valid = np.ones(labels.shape, bool) if mask is None else np.asarray(mask, bool)
    if valid.shape != labels.shape:
        raise ValueError(f"mask must have shape {labels.shape}, got {valid.shape}")
    count = int(valid.sum())
    if count == 0:
        raise ValueError("no valid rows to score (the mask is all False or the set is empty)")
    num_classes = scores.shape[1]
    checked = labels[valid]
    if checked.size and (checked.min() < 0 or checked.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) for {num_classes} class scores, got range "
            f"[{checked.min()}, {checked.max()}]"
        )
    top = min(5, num_classes)
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    hit = ranked == labels[:, None]
    if votes:
        hit &= np.take_along_axis(scores, ranked, axis=1) > 0
    return {
        "top1": 100.0 * float(hit[:, 0][valid].sum()) / count,
        "top5": 100.0 * float(hit.any(axis=1)[valid].sum()) / count,
    }
