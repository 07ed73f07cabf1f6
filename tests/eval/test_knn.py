"""Weighted kNN vs a plain-numpy transcription of the InstDisc / DINO vote."""

import jax
import numpy as np
import pytest

from ssl_jax.eval import knn
from ssl_jax.eval._accuracy import topk_accuracy


def knn_numpy(train, train_labels, test, *, k, temperature, num_classes):
    """One query at a time, float64: cosine sims, top-k, votes exp(s / T) per class."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    scores = np.zeros((len(test), num_classes))
    for i, q in enumerate(test.astype(np.float64)):
        sims = train.astype(np.float64) @ q
        top = np.argsort(-sims, kind="stable")[:k]
        for j in top:
            scores[i, train_labels[j]] += np.exp(sims[j] / temperature)
    return scores.argmax(axis=1), scores


def random_problem(seed, n, m, d, c):
    r = np.random.default_rng(seed)
    return (
        r.normal(size=(n, d)).astype(np.float32),
        r.integers(0, c, n),
        r.normal(size=(m, d)).astype(np.float32),
        r.integers(0, c, m),
    )


def clusters(seed, n, d, c, spread=0.1):
    r = np.random.default_rng(seed)
    centres = r.normal(size=(c, d))
    y = r.integers(0, c, n)
    return (centres[y] + spread * r.normal(size=(n, d))).astype(np.float32), y


@pytest.mark.parametrize(
    "n, m, d, c, k, t",
    [(40, 9, 3, 2, 1, 0.07), (300, 101, 16, 5, 20, 0.07), (257, 64, 33, 10, 257, 0.5)],
)
def test_matches_numpy_vote(n, m, d, c, k, t):
    tr, tl, te, _ = random_problem(n + k, n, m, d, c)
    want_pred, want_scores = knn_numpy(tr, tl, te, k=k, temperature=t, num_classes=c)
    pred, scores = knn.knn_classify(tr, tl, te, num_classes=c, k=k, temperature=t, chunk_size=32)
    np.testing.assert_array_equal(pred, want_pred)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-6 * want_scores.max())
    assert pred.dtype == np.int32 and scores.shape == (m, c)


def test_neighbours_match_numpy():
    tr, _, te, _ = random_problem(0, 120, 30, 8, 3)
    sims, idx = knn.knn_neighbours(tr, te, k=7, chunk_size=8)
    trn = tr / np.linalg.norm(tr, axis=1, keepdims=True)
    ten = te / np.linalg.norm(te, axis=1, keepdims=True)
    full = ten.astype(np.float64) @ trn.T.astype(np.float64)
    want = np.argsort(-full, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_allclose(sims, np.take_along_axis(full, want, 1), atol=1e-5)


def test_chunked_equals_unchunked():
    tr, tl, te, _ = random_problem(1, 200, 77, 12, 6)
    ref_pred, ref_scores = knn.knn_classify(tr, tl, te, num_classes=6, k=15, chunk_size=1000)
    for chunk in (1, 7, 32):
        pred, scores = knn.knn_classify(tr, tl, te, num_classes=6, k=15, chunk_size=chunk)
        np.testing.assert_array_equal(pred, ref_pred)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)


def test_sharded_equals_single_device(n_devices):
    tr, tl, te, yl = random_problem(2, 160, 53, 10, 4)  # 53 queries: not a multiple of 8
    mesh = jax.make_mesh((n_devices,), ("data",))
    ref_pred, ref_scores = knn.knn_classify(tr, tl, te, num_classes=4, k=10, chunk_size=20)
    pred, scores = knn.knn_classify(tr, tl, te, num_classes=4, k=10, chunk_size=20, mesh=mesh)
    np.testing.assert_array_equal(pred, ref_pred)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
    kw = dict(num_classes=4, k=10, chunk_size=12)
    assert knn.knn_accuracy(tr, tl, te, yl, mesh=mesh, **kw) == knn.knn_accuracy(
        tr, tl, te, yl, **kw
    )
    ref_idx = knn.knn_neighbours(tr, te, k=5)[1]
    np.testing.assert_array_equal(knn.knn_neighbours(tr, te, k=5, mesh=mesh)[1], ref_idx)


def test_mask_excludes_padding_rows():
    tr, tl = clusters(3, 200, 8, 4)
    te, yl = clusters(3, 40, 8, 4)  # same centres (same seed), so every row is right
    r = np.random.default_rng(4)
    pad = r.normal(size=(9, 8)).astype(np.float32)
    te_pad = np.concatenate([te, pad])
    yl_pad = np.concatenate([yl, (yl[:9] + 1) % 4])  # padding labels are wrong on purpose
    mask = np.arange(49) < 40
    acc = knn.knn_accuracy(tr, tl, te_pad, yl_pad, num_classes=4, k=10, mask=mask, chunk_size=16)
    assert (
        acc
        == knn.knn_accuracy(tr, tl, te, yl, num_classes=4, k=10)
        == {
            "top1": 100.0,
            "top5": 100.0,
        }
    )
    unmasked = knn.knn_accuracy(tr, tl, te_pad, yl_pad, num_classes=4, k=10)
    assert unmasked["top1"] < 100.0
    pred, scores = knn.knn_classify(tr, tl, te_pad, num_classes=4, k=10, mask=mask)
    assert (pred[40:] == -1).all() and (scores[40:] == 0).all()
    np.testing.assert_array_equal(pred[:40], yl)


def test_separated_clusters_give_100_percent():
    x, y = clusters(5, 600, 32, 10)
    acc = knn.knn_accuracy(x[:500], y[:500], x[500:], y[500:], num_classes=10, k=20)
    assert acc == {"top1": 100.0, "top5": 100.0}


def test_random_labels_give_chance():
    tr, tl, te, yl = random_problem(6, 1000, 1000, 16, 4)
    acc = knn.knn_accuracy(tr, tl, te, yl, num_classes=4, k=20)
    # Chance is 25% (binomial s.d. 1.4% over 1000 queries). Top-5 covers all 4 classes except
    # for the rare query whose 20 neighbours all come from 3 classes.
    assert 19.0 < acc["top1"] < 31.0
    assert 95.0 <= acc["top5"] <= 100.0


def test_topk_accuracy_by_hand():
    scores = np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6], [1, 1, 0]])
    labels = np.array([1, 2, 0, 1])
    # Row 3 ties classes 0 and 1: the lower index wins, as with argmax.
    assert topk_accuracy(scores, labels) == {"top1": 25.0, "top5": 100.0}
    many = np.tile(np.arange(10.0), (2, 1))
    assert topk_accuracy(many, np.array([5, 4])) == {"top1": 0.0, "top5": 50.0}
    assert topk_accuracy(scores, labels, mask=np.array([1, 0, 0, 0], bool))["top1"] == 100.0


def test_top5_counts_only_voted_classes():
    tr, tl, te, yl = random_problem(8, 300, 200, 6, 10)
    one = knn.knn_accuracy(tr, tl, te, yl, num_classes=10, k=1)
    assert one["top5"] == one["top1"]  # one neighbour votes for one class only
    # Only class 1 has votes: a label-0 row must not be a top-5 hit through tie-breaking.
    scores = np.array([[0.0, 2.0, 0.0], [0.0, 2.0, 0.0]])
    assert topk_accuracy(scores, np.array([0, 1]), votes=True) == {"top1": 50.0, "top5": 50.0}
    assert topk_accuracy(scores, np.array([0, 1]))["top5"] == 100.0


def test_bad_inputs_raise():
    tr, tl, te, yl = random_problem(7, 20, 5, 4, 3)
    with pytest.raises(ValueError, match="k must be in"):
        knn.knn_classify(tr, tl, te, num_classes=3, k=21)
    with pytest.raises(ValueError, match="same feature size"):
        knn.knn_classify(tr, tl, te[:, :3], num_classes=3, k=2)
    with pytest.raises(ValueError, match="train_labels must lie"):
        knn.knn_classify(tr, tl + 3, te, num_classes=3, k=2)
    with pytest.raises(ValueError, match="temperature"):
        knn.knn_classify(tr, tl, te, num_classes=3, k=2, temperature=0.0)
    with pytest.raises(ValueError, match="mask must have shape"):
        knn.knn_classify(tr, tl, te, num_classes=3, k=2, mask=np.ones(4, bool))
    with pytest.raises(ValueError, match="train_labels must have shape"):
        knn.knn_classify(tr, tl[:5], te, num_classes=3, k=2)
    with pytest.raises(ValueError, match="test_labels"):
        knn.knn_accuracy(tr, tl, te, yl[:2], num_classes=3, k=2)
    with pytest.raises(ValueError, match="chunk_size"):
        knn.knn_classify(tr, tl, te, num_classes=3, k=2, chunk_size=0)
    with pytest.raises(ValueError, match="no valid rows"):
        knn.knn_accuracy(tr, tl, te, yl, num_classes=3, k=2, mask=np.zeros(5, bool))
    # Test labels out of range are an error, not silent misses; padding rows are not checked.
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*\[0, 5\]"):
        knn.knn_accuracy(tr, tl, te, np.array([0, 1, 2, 5, 0]), num_classes=3, k=2)
    with pytest.raises(ValueError, match="labels must lie in"):
        topk_accuracy(np.zeros((2, 3)), np.array([0, -1]))
    pad = np.array([True, True, True, True, False])
    knn.knn_accuracy(tr, tl, te, np.array([0, 1, 2, 1, 99]), num_classes=3, k=2, mask=pad)
