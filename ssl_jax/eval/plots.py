"""Figures of a run: training curves, the alignment-uniformity plane, embedding maps and
nearest-neighbour retrievals. Each function writes one PNG and returns its path.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly (no
``pyplot``), so nothing touches the global backend or leaks open figures.

References:
  Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and
  Uniformity on the Hypersphere", ICML 2020 (Fig. 5, the alignment-uniformity plane);
  van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR 2008.
"""

import json
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

_SKIP = {"step", "finite"}
_ACCURACY = ("top1", "top5", "acc")
_COLLAPSE = ("embedding_std", "alignment", "uniformity", "effective_rank", "rank")


def _save(fig: Figure, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    return out


def _load_rows(metrics: str | Path | Sequence[dict]) -> list[dict]:
    if isinstance(metrics, str | Path):
        with Path(metrics).open() as f:
            return [json.loads(line) for line in f if line.strip()]
    return [dict(r) for r in metrics]


def _group(key: str) -> int:
    """Plot order: losses, accuracies, collapse monitors, then the rest (lr, grad norm ...)."""
    if "loss" in key:
        return 0
    if any(a in key for a in _ACCURACY):
        return 1
    if any(c in key for c in _COLLAPSE):
        return 2
    return 3


def _ema(values: np.ndarray, smoothing: float) -> np.ndarray:
    """TensorBoard-style debiased exponential moving average."""
    out, acc = np.empty_like(values), 0.0
    for i, v in enumerate(values):
        acc = smoothing * acc + (1 - smoothing) * v
        out[i] = acc / (1 - smoothing ** (i + 1))
    return out


def plot_training_curves(
    metrics: str | Path | Sequence[dict],
    out: str | Path,
    *,
    keys: Sequence[str] | None = None,
    smoothing: float = 0.0,
    ncols: int = 4,
) -> Path:
    """One subplot per logged scalar against the step.

    Subplots are ordered losses, accuracies (kNN / online probe), collapse monitors
    (embedding std, alignment, uniformity, effective rank), then the rest. Losses and the
    rest (learning rate, gradient norm ...) get a log y axis when positive and spanning more
    than a factor of 20.

    Args:
      metrics: path of a ``metrics.jsonl`` (one ``{"step": s, name: value}`` per line) or a
        list of such dicts; a key may be missing from some rows (e.g. periodic kNN).
      out: PNG path.
      keys: the scalars to plot (default: every numeric key but ``step`` and ``finite``).
      smoothing: EMA factor in ``[0, 1)`` (0: raw only; else raw faint + smoothed).
      ncols: subplots per row.

    Returns:
      ``out`` as a ``Path``.
    """
    rows = _load_rows(metrics)
    if not rows:
        raise ValueError("no metrics rows to plot")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if keys is None:
        found = {k for r in rows for k, v in r.items() if isinstance(v, int | float)}
        keys = sorted(found - _SKIP, key=lambda k: (_group(k), k))
    if not keys:
        raise ValueError("no numeric metrics to plot besides 'step'")
    ncols = max(1, min(ncols, len(keys)))
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(4 * ncols, 3 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colours = ("tab:blue", "tab:green", "tab:red", "tab:gray")
    for ax, key in zip(axes, keys, strict=False):
        pts = [
            (r.get("step", i), r[key])
            for i, r in enumerate(rows)
            if isinstance(r.get(key), int | float) and math.isfinite(r[key])
        ]
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if not pts:
            ax.text(0.5, 0.5, "no finite values", ha="center", transform=ax.transAxes)
            continue
        steps, values = (np.asarray(a, np.float64) for a in zip(*pts, strict=True))
        colour = colours[_group(key)]
        if smoothing > 0 and len(values) > 1:
            ax.plot(steps, values, color=colour, alpha=0.3, lw=0.8)
            ax.plot(steps, _ema(values, smoothing), color=colour, lw=1.5)
        else:
            ax.plot(steps, values, color=colour, lw=1.2, marker="." if len(values) < 30 else "")
        # Log scale for losses and optimiser scalars; accuracies and monitors stay linear.
        if _group(key) in (0, 3) and values.min() > 0 and values.max() / values.min() > 20:
            ax.set_yscale("log")
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    return _save(fig, out)


def plot_alignment_uniformity(
    points: Sequence[dict],
    out: str | Path,
    *,
    color_key: str | None = None,
) -> Path:
    """Checkpoints on the alignment-uniformity plane, joined by arrows in time order.

    Lower-left is better (close positives, uniform spread). As in Wang & Isola (Fig. 5) the
    x axis is ``uniformity`` and the y axis ``alignment``.

    Args:
      points: ``[{'label': str, 'alignment': float, 'uniformity': float, ...}]`` in time
        order (e.g. one per checkpoint).
      out: PNG path.
      color_key: optional key present in every point (e.g. ``'knn_top1'``) that colours the
        points, with a colour bar; default colours by position in time.

    Returns:
      ``out`` as a ``Path``.

    References:
      Wang & Isola, ICML 2020, Fig. 5.
    """
    if not points:
        raise ValueError("points is empty: need at least one checkpoint")
    for i, p in enumerate(points):
        for name in ("alignment", "uniformity") + ((color_key,) if color_key else ()):
            value = p.get(name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"point {i} ({p.get('label')}) needs a finite {name!r}")
    x = np.array([p["uniformity"] for p in points], np.float64)
    y = np.array([p["alignment"] for p in points], np.float64)
    c = np.array([p[color_key] for p in points] if color_key else np.arange(len(points)), float)
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    for i in range(len(points) - 1):
        ax.annotate(
            "",
            xy=(x[i + 1], y[i + 1]),
            xytext=(x[i], y[i]),
            arrowprops=dict(arrowstyle="->", color="0.5", lw=1.0),
        )
    sc = ax.scatter(x, y, c=c, cmap="viridis", s=60, zorder=3, edgecolors="k")
    fig.colorbar(sc, ax=ax, label=color_key or "checkpoint order")
    for p, xi, yi in zip(points, x, y, strict=True):
        ax.annotate(str(p.get("label", "")), (xi, yi), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("uniformity  $\\mathcal{L}_{uniform}$ (lower is better)")
    ax.set_ylabel("alignment  $\\mathcal{L}_{align}$ (lower is better)")
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    return _save(fig, out)


def _subsample(n: int, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def embed_2d(
    feats: np.ndarray, *, method: str = "tsne", seed: int = 0, perplexity: float = 30.0
) -> np.ndarray:
    """2-D map of L2-normalised features (t-SNE after PCA to <= 50 dims, or plain PCA).

    Args:
      feats: ``[N, D]`` features.
      method: ``'tsne'`` or ``'pca'``.
      seed: random state of t-SNE.
      perplexity: t-SNE perplexity (capped at ``(N - 1) / 3``).

    Returns:
      ``[N, 2]`` coordinates.

    References:
      van der Maaten & Hinton, JMLR 2008.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method not in ("tsne", "pca"):
        raise ValueError(f"method must be 'tsne' or 'pca' (UMAP is not bundled), got {method!r}")
    x = np.asarray(feats, np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"feats must be [N >= 3, D], got shape {x.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if method == "pca":
        return PCA(n_components=min(2, x.shape[1]), random_state=seed).fit_transform(x)
    if x.shape[1] > 50:
        x = PCA(n_components=min(50, x.shape[0]), random_state=seed).fit_transform(x)
    perplexity = min(perplexity, (x.shape[0] - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(x)


def plot_embedding_map(
    feats: np.ndarray,
    labels: np.ndarray,
    out: str | Path,
    *,
    method: str = "tsne",
    class_names: Sequence[str] | None = None,
    max_points: int = 3000,
    seed: int = 0,
    perplexity: float = 30.0,
) -> Path:
    """Scatter of a 2-D embedding of (a fixed random subsample of) the features by class.

    Args:
      feats: ``[N, D]`` features.
      labels: ``[N]`` integer labels.
      out: PNG path.
      method: ``'tsne'`` or ``'pca'``.
      class_names: names of the classes, indexed by label.
      max_points: subsample size (t-SNE is quadratic in it).
      seed: seed of the subsample and of t-SNE.
      perplexity: t-SNE perplexity.

    Returns:
      ``out`` as a ``Path``.

    References:
      van der Maaten & Hinton, JMLR 2008.
    """
    feats, labels = np.asarray(feats), np.asarray(labels)
    if labels.shape != feats.shape[:1]:
        raise ValueError(f"labels must have shape ({feats.shape[0]},), got {labels.shape}")
    idx = _subsample(feats.shape[0], max_points, seed)
    xy = embed_2d(feats[idx], method=method, seed=seed, perplexity=perplexity)
    labels = labels[idx]
    classes = np.unique(labels)
    cmap = "tab10" if len(classes) <= 10 else "tab20"
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.subplots()
    palette = matplotlib.colormaps[cmap]
    for j, c in enumerate(classes):
        sel = labels == c
        name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else c
        ax.scatter(*xy[sel].T, s=6, color=palette(j % palette.N), label=str(name))
    if len(classes) <= 20:
        ax.legend(markerscale=3, fontsize=8, loc="best", framealpha=0.8)
    ax.set_title(f"{method.upper()} of {len(idx)} points")
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, out)


def _check_images(x: np.ndarray, rank: int, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != rank or x.shape[-1] not in (1, 3):
        raise ValueError(
            f"{name} must be uint8 with shape {'[Q, K, H, W, C]' if rank == 5 else '[Q, H, W, C]'}"
            f" and C in (1, 3), got dtype {x.dtype} shape {x.shape}"
        )
    return x


def plot_nearest_neighbours(
    query_images: np.ndarray,
    neighbour_images: np.ndarray,
    out: str | Path,
    *,
    query_labels: np.ndarray | None = None,
    neighbour_labels: np.ndarray | None = None,
    similarities: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """A grid with one query per row followed by its retrieved neighbours.

    With labels, each neighbour gets a green frame if its class matches the query's and a red
    one otherwise. Neighbours typically come from ``knn.knn_neighbours``.

    Args:
      query_images: ``[Q, H, W, C]`` uint8.
      neighbour_images: ``[Q, K, H, W, C]`` uint8, most similar first.
      out: PNG path.
      query_labels: optional ``[Q]`` integer labels.
      neighbour_labels: optional ``[Q, K]`` integer labels.
      similarities: optional ``[Q, K]`` cosine similarities shown under each neighbour.
      class_names: names of the classes, indexed by label.

    Returns:
      ``out`` as a ``Path``.

    References:
      Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
      CVPR 2018, Fig. 4.
    """
    queries = _check_images(query_images, 4, "query_images")
    nbrs = _check_images(neighbour_images, 5, "neighbour_images")
    q, k = nbrs.shape[:2]
    if queries.shape[0] != q:
        raise ValueError(f"{queries.shape[0]} queries but neighbours for {q}")
    for arr, shape, name in (
        (query_labels, (q,), "query_labels"),
        (neighbour_labels, (q, k), "neighbour_labels"),
        (similarities, (q, k), "similarities"),
    ):
        if arr is not None and np.shape(arr) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {np.shape(arr)}")

    def name(label) -> str:
        if label is None:
            return ""
        label = int(label)
        return class_names[label] if class_names is not None else str(label)

    fig = Figure(figsize=(1.3 * (k + 1), 1.5 * q), layout="constrained")
    axes = fig.subplots(q, k + 1, squeeze=False)
    for i in range(q):
        qlab = None if query_labels is None else query_labels[i]
        cells = [(queries[i], f"query\n{name(qlab)}", None)]
        for j in range(k):
            nlab = None if neighbour_labels is None else neighbour_labels[i][j]
            text = name(nlab)
            if similarities is not None:
                text = f"{text}\n{float(similarities[i][j]):.2f}".strip()
            frame = None
            if qlab is not None and nlab is not None:
                frame = "tab:green" if int(nlab) == int(qlab) else "tab:red"
            cells.append((nbrs[i, j], text, frame))
        for ax, (img, text, frame) in zip(axes[i], cells, strict=True):
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(text, fontsize=7)
            for spine in ax.spines.values():
                spine.set_visible(frame is not None)
                if frame is not None:
                    spine.set_color(frame)
                    spine.set_linewidth(3)
    return _save(fig, out)
