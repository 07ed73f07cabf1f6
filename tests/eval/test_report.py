"""Representation report: known cases (collapse, one-hot, isotropic) and numpy formulas."""

import numpy as np
import pytest

from ssl_jax import metrics
from ssl_jax.eval.report import representation_report


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def uniformity_numpy(z, t=2.0):
    """Wang & Isola: log mean over distinct pairs of exp(-t ||u_i - u_j||^2), float64."""
    u = unit(np.asarray(z, np.float64))
    sq = ((u[:, None, :] - u[None, :, :]) ** 2).sum(-1)
    i, j = np.triu_indices(len(u), k=1)
    return float(np.log(np.mean(np.exp(-t * sq[i, j]))))


def alignment_numpy(z1, z2, alpha=2.0):
    d = np.linalg.norm(unit(np.asarray(z1, np.float64)) - unit(np.asarray(z2, np.float64)), axis=1)
    return float(np.mean(d**alpha))


def effective_rank_numpy(z):
    s = np.linalg.svd(np.asarray(z, np.float64), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def test_collapsed_features():
    z = np.tile(np.random.default_rng(0).normal(size=(1, 8)), (50, 1)).astype(np.float32)
    r = representation_report(z, np.arange(50) % 2, z)
    assert r["embedding_std"] == pytest.approx(0.0, abs=1e-6)
    assert r["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    assert r["uniformity"] == pytest.approx(0.0, abs=1e-5)
    assert r["alignment"] == pytest.approx(0.0, abs=1e-6)
    assert r["intra_class_cosine"] == pytest.approx(1.0) == r["inter_class_cosine"]
    assert r["dim"] == 8 and r["num_points"] == 50


def test_one_hot_classes():
    d, per = 6, 5
    labels = np.repeat(np.arange(d), per)
    z = np.eye(d, dtype=np.float32)[labels] * 3.0  # scale must not matter
    r = representation_report(z, labels)
    n = d * per
    # Distinct pairs: same class at distance 0, different classes at squared distance 2.
    n_same = d * per * (per - 1) / 2
    n_pairs = n * (n - 1) / 2
    want_unif = np.log((n_same + (n_pairs - n_same) * np.exp(-4.0)) / n_pairs)
    assert r["uniformity"] == pytest.approx(want_unif, rel=1e-5)
    assert r["effective_rank"] == pytest.approx(d, rel=1e-4)
    assert r["intra_class_cosine"] == pytest.approx(1.0)
    assert r["inter_class_cosine"] == pytest.approx(0.0, abs=1e-7)
    assert "alignment" not in r


@pytest.mark.parametrize("n, d", [(40, 3), (200, 16)])
def test_matches_metrics_and_numpy_on_random_data(n, d):
    rng = np.random.default_rng(n + d)
    z1 = rng.normal(size=(n, d)).astype(np.float32)
    z2 = z1 + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
    r = representation_report(z1, None, z2)
    assert r["uniformity"] == pytest.approx(uniformity_numpy(z1), rel=1e-4)
    assert r["alignment"] == pytest.approx(alignment_numpy(z1, z2), rel=1e-4)
    assert r["effective_rank"] == pytest.approx(effective_rank_numpy(z1), rel=1e-4)
    assert r["embedding_std"] == pytest.approx(float(metrics.embedding_std(z1)), rel=1e-6)
    assert r["embedding_std_ref"] == pytest.approx(1 / np.sqrt(d))


def test_isotropic_std_is_near_reference():
    z = np.random.default_rng(1).normal(size=(3000, 32)).astype(np.float32)
    r = representation_report(z, max_points=2000)
    assert r["embedding_std"] == pytest.approx(r["embedding_std_ref"], rel=0.05)


def test_subsample_is_fixed_and_shared_across_views_and_labels():
    rng = np.random.default_rng(2)
    z1 = rng.normal(size=(500, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 500)
    a = representation_report(z1, labels, z1.copy(), max_points=100, seed=3)
    b = representation_report(z1, labels, z1.copy(), max_points=100, seed=3)
    c = representation_report(z1, labels, z1.copy(), max_points=100, seed=4)
    assert a == b and a["num_points"] == 100
    assert a["uniformity"] != c["uniformity"]
    assert a["alignment"] == pytest.approx(0.0, abs=1e-6)  # same rows picked in both views
    idx = np.sort(np.random.default_rng(3).choice(500, 100, replace=False))
    assert a["uniformity"] == pytest.approx(uniformity_numpy(z1[idx]), rel=1e-4)


def test_bad_inputs_raise():
    z = np.ones((10, 3), np.float32)
    with pytest.raises(ValueError, match="feats must be"):
        representation_report(z[0])
    with pytest.raises(ValueError, match="labels must have shape"):
        representation_report(z, np.zeros(9))
    with pytest.raises(ValueError, match="feats_view2"):
        representation_report(z, None, z[:5])
    with pytest.raises(ValueError, match="max_points"):
        representation_report(z, max_points=1)
