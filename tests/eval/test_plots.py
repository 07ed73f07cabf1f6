"""Every figure writes a readable, non-empty PNG; bad inputs raise."""

import json

import matplotlib.image
import numpy as np
import pytest

from ssl_jax.eval import plots

_PNG = b"\x89PNG\r\n\x1a\n"


def read_png(path):
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == _PNG
    img = matplotlib.image.imread(path)
    # Something is drawn: not a single flat colour.
    assert img.ndim == 3 and img.std() > 0.01
    return img


def fake_run(n=60):
    rows = []
    for s in range(n):
        row = {
            "step": s,
            "loss": 4.0 * np.exp(-s / 10) + 0.01,
            "probe_top1": s / n,
            "embedding_std": 0.1,
            "uniformity": -1.0 - s / n,
            "learning_rate": 0.1 * min(1.0, s / 10),
            "finite": 1.0,
        }
        if s % 10 == 0:
            row["knn_top1"] = 10.0 + s
        rows.append(row)
    return rows


def test_training_curves_from_rows_and_jsonl(tmp_path):
    rows = fake_run()
    rows[5]["loss"] = float("nan")  # a bad value is skipped, not plotted
    path = plots.plot_training_curves(rows, tmp_path / "a" / "curves.png", smoothing=0.5)
    read_png(path)
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    read_png(plots.plot_training_curves(jsonl, tmp_path / "curves2.png", keys=["loss"]))
    with pytest.raises(ValueError, match="no metrics rows"):
        plots.plot_training_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="smoothing"):
        plots.plot_training_curves(rows, tmp_path / "x.png", smoothing=1.0)


def test_curve_order_and_ema():
    keys = ["grad_norm", "uniformity", "knn_top1", "probe_loss", "loss"]
    assert sorted(keys, key=lambda k: (plots._group(k), k)) == [
        "loss",
        "probe_loss",
        "knn_top1",
        "uniformity",
        "grad_norm",
    ]
    v = np.array([1.0, 3.0, 2.0])
    # Debiased EMA with factor a: m_t = (a m_{t-1} + (1-a) v_t) / (1 - a^t), m_0 = 0.
    a = 0.5
    m1 = 0.5 * 1.0
    m2 = a * m1 + 0.5 * 3.0
    m3 = a * m2 + 0.5 * 2.0
    want = [m1 / (1 - a), m2 / (1 - a**2), m3 / (1 - a**3)]
    np.testing.assert_allclose(plots._ema(v, a), want)


def test_alignment_uniformity_plane(tmp_path):
    points = [
        {"label": f"ep{i}", "alignment": 1.0 - 0.1 * i, "uniformity": -1.0 - 0.3 * i, "top1": i}
        for i in range(5)
    ]
    read_png(plots.plot_alignment_uniformity(points, tmp_path / "au.png"))
    read_png(plots.plot_alignment_uniformity(points, tmp_path / "au2.png", color_key="top1"))
    read_png(plots.plot_alignment_uniformity(points[:1], tmp_path / "au3.png"))
    with pytest.raises(ValueError, match="finite 'alignment'"):
        plots.plot_alignment_uniformity([{"label": "x", "uniformity": -1}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty"):
        plots.plot_alignment_uniformity([], tmp_path / "x.png")


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_map(tmp_path, method):
    r = np.random.default_rng(0)
    centres = 3 * r.normal(size=(3, 64))
    y = r.integers(0, 3, 90)
    x = centres[y] + r.normal(size=(90, 64))
    path = plots.plot_embedding_map(
        x, y, tmp_path / f"{method}.png", method=method, class_names=["a", "b", "c"], max_points=60
    )
    read_png(path)


def test_embed_2d_separates_clusters_and_validates():
    r = np.random.default_rng(1)
    centres = 5 * r.normal(size=(2, 10))
    y = np.repeat([0, 1], 30)
    xy = plots.embed_2d(centres[y] + 0.1 * r.normal(size=(60, 10)), method="pca")
    # First principal component splits the two clusters perfectly.
    side = xy[:, 0] > xy[:, 0].mean()
    assert (side[:30] == side[0]).all() and (side[30:] != side[0]).all()
    with pytest.raises(ValueError, match="UMAP"):
        plots.embed_2d(np.ones((5, 2)), method="umap")
    with pytest.raises(ValueError, match="N >= 3"):
        plots.embed_2d(np.ones((2, 2)))


def test_nearest_neighbours_grid(tmp_path):
    r = np.random.default_rng(2)
    q = r.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    n = r.integers(0, 256, (3, 4, 16, 16, 3), dtype=np.uint8)
    path = plots.plot_nearest_neighbours(
        q,
        n,
        tmp_path / "nn.png",
        query_labels=np.array([0, 1, 2]),
        neighbour_labels=r.integers(0, 3, (3, 4)),
        similarities=r.random((3, 4)),
        class_names=["cat", "dog", "car"],
    )
    img = read_png(path)
    assert img.shape[1] > img.shape[0]  # 5 columns, 3 rows
    read_png(plots.plot_nearest_neighbours(q[:1, ..., :1], n[:1, ..., :1], tmp_path / "g.png"))
    with pytest.raises(ValueError, match="uint8"):
        plots.plot_nearest_neighbours(q.astype(np.float32), n, tmp_path / "x.png")
    with pytest.raises(ValueError, match="neighbours for 3"):
        plots.plot_nearest_neighbours(q[:2], n, tmp_path / "x.png")
    with pytest.raises(ValueError, match="similarities"):
        plots.plot_nearest_neighbours(q, n, tmp_path / "x.png", similarities=np.ones(3))
