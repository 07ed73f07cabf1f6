"""A one-call summary of a representation: collapse monitors and, with labels, class structure.

The monitors are the ones logged during training (``ssl_jax.metrics``), computed here on a
fixed random subsample of frozen features so that reports of different checkpoints are
comparable and cheap (uniformity is quadratic in the number of points).

References:
  Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and
  Uniformity on the Hypersphere", ICML 2020; Chen & He, "Exploring Simple Siamese
  Representation Learning", CVPR 2021 (std of normalised outputs, ``1/sqrt(d)``);
  Roy & Vetterli, "The Effective Rank", EUSIPCO 2007; Garrido et al., "RankMe", ICML 2023.
"""

import jax
import numpy as np

from ssl_jax import metrics


@jax.jit
def _monitors(z: jax.Array) -> dict[str, jax.Array]:
    # One compiled call instead of op-by-op dispatch of three metrics.
    return {
        "embedding_std": metrics.embedding_std(z),
        "effective_rank": metrics.effective_rank(z),
        "uniformity": metrics.uniformity(z),
    }


_alignment = jax.jit(metrics.alignment)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _class_cosines(z: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean cosine similarity of distinct same-class pairs and of different-class pairs."""
    unit = _unit(z.astype(np.float64))
    gram = unit @ unit.T
    same = labels[:, None] == labels[None, :]
    off_diag = ~np.eye(len(labels), dtype=bool)
    out = {}
    for name, sel in (("intra_class_cosine", same & off_diag), ("inter_class_cosine", ~same)):
        out[name] = float(gram[sel].mean()) if sel.any() else float("nan")
    return out


def representation_report(
    feats: np.ndarray,
    labels: np.ndarray | None = None,
    feats_view2: np.ndarray | None = None,
    *,
    max_points: int = 4096,
    seed: int = 0,
) -> dict[str, float]:
    """Collapse monitors of ``[N, D]`` features on a fixed subsample of ``max_points`` rows.

    Args:
      feats: ``[N, D]`` features (backbone or projector output) of one view.
      labels: optional ``[N]`` integer labels: adds mean intra- / inter-class cosine.
      feats_view2: optional ``[N, D]`` features of a second view of the same images, row
        aligned with ``feats``: adds alignment.
      max_points: subsample size (the same rows for both views and the labels).
      seed: seed of the subsample.

    Returns:
      ``{'num_points', 'dim', 'embedding_std', 'embedding_std_ref' (= 1/sqrt(D), the value
      of isotropic features), 'effective_rank', 'uniformity'}``, plus ``'alignment'`` with
      two views and ``'intra_class_cosine'``, ``'inter_class_cosine'`` with labels.
      Uniformity, alignment and std use L2-normalised features (t = 2, alpha = 2); the
      effective rank uses the features as given.

    References:
      Wang & Isola, ICML 2020; Chen & He, CVPR 2021; Roy & Vetterli, EUSIPCO 2007.
    """
    feats = np.asarray(feats, np.float32)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"feats must be [N >= 2, D], got shape {feats.shape}")
    n, d = feats.shape
    if labels is not None and np.shape(labels) != (n,):
        raise ValueError(f"labels must have shape ({n},), got {np.shape(labels)}")
    if feats_view2 is not None and np.shape(feats_view2) != feats.shape:
        raise ValueError(
            f"feats_view2 must have the shape of feats {feats.shape}, got {np.shape(feats_view2)}"
        )
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    idx = np.arange(n)
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    z = feats[idx]
    monitors = {k: float(v) for k, v in _monitors(z).items()}
    report = {
        "num_points": float(len(idx)),
        "dim": float(d),
        "embedding_std": monitors["embedding_std"],
        "embedding_std_ref": float(1.0 / np.sqrt(d)),
        "effective_rank": monitors["effective_rank"],
        "uniformity": monitors["uniformity"],
    }
    if feats_view2 is not None:
        z2 = np.asarray(feats_view2, np.float32)[idx]
        report["alignment"] = float(_alignment(z, z2))
    if labels is not None:
        report.update(_class_cosines(z, np.asarray(labels)[idx]))
    return report
