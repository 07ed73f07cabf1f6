"""Linear probes: online loss vs numpy (value + gradient), offline fit vs scikit-learn."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ssl_jax.eval.linear_probe import (
    feature_standardisation,
    fit_linear_probe,
    init_online_probe,
    linear_logits,
    linear_probe,
    online_probe_loss,
)


def softmax_ce_numpy(w, b, x, y):
    """Mean softmax cross-entropy, its gradients and top-1 accuracy, float64."""
    logits = x @ w + b
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(p[np.arange(n), y]).mean()
    delta = p.copy()
    delta[np.arange(n), y] -= 1.0
    return loss, x.T @ delta / n, delta.mean(axis=0), (logits.argmax(1) == y).mean()


def clusters(seed, n, d, c, spread=0.3):
    r = np.random.default_rng(seed)
    centres = 3 * r.normal(size=(c, d))
    y = r.integers(0, c, n)
    return (centres[y] + spread * r.normal(size=(n, d))).astype(np.float32), y


@pytest.mark.parametrize(
    "b, f, c, jit", [(1, 3, 2, True), (16, 8, 5, True), (33, 20, 10, True), (16, 8, 5, False)]
)
def test_online_probe_loss_matches_numpy(b, f, c, jit):
    r = np.random.default_rng(b * f + c)
    params = {
        "kernel": jnp.asarray(r.normal(size=(f, c)), jnp.float32),
        "bias": jnp.asarray(r.normal(size=(c,)), jnp.float32),
    }
    x = r.normal(size=(b, f)).astype(np.float32)
    y = r.integers(0, c, b)
    fn = jax.value_and_grad(online_probe_loss, has_aux=True)
    fn = jax.jit(fn) if jit else fn
    (loss, acc), grads = fn(params, x, y)
    want_loss, gw, gb, want_acc = softmax_ce_numpy(
        np.asarray(params["kernel"], np.float64), np.asarray(params["bias"], np.float64), x, y
    )
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    np.testing.assert_allclose(acc, want_acc, rtol=1e-6)
    np.testing.assert_allclose(grads["kernel"], gw, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["bias"], gb, rtol=1e-4, atol=1e-6)


def test_online_probe_blocks_gradient_to_features():
    params = init_online_probe(jax.random.key(0), 6, 3)
    x = jnp.ones((4, 6))
    g = jax.grad(lambda f: online_probe_loss(params, f, jnp.arange(4) % 3)[0])(x)
    np.testing.assert_array_equal(g, 0.0)


def test_init_online_probe_is_a_dense_layer():
    p = init_online_probe(jax.random.key(1), 7, 4)
    assert p["kernel"].shape == (7, 4) and p["bias"].shape == (4,)
    assert p["kernel"].dtype == jnp.float32 and 0 < float(jnp.std(p["kernel"])) < 0.03
    np.testing.assert_array_equal(p["kernel"], init_online_probe(jax.random.key(1), 7, 4)["kernel"])
    x = jax.random.normal(jax.random.key(2), (5, 7))
    np.testing.assert_allclose(nn.Dense(4).apply({"params": p}, x), linear_logits(p, x), rtol=1e-6)
    with pytest.raises(ValueError, match="feature_dim"):
        init_online_probe(jax.random.key(0), 0, 3)


def test_full_batch_fit_reaches_sklearn_optimum():
    # Strongly convex problem: mean CE + wd/2 ||W||^2 has one minimiser. sklearn minimises
    # C * sum CE + 1/2 ||W||^2 (intercept unpenalised), i.e. the same with C = 1 / (wd * N).
    r = np.random.default_rng(0)
    n, d, c, wd = 150, 5, 3, 0.02
    x = (r.normal(size=(n, d)) * [1, 2, 0.5, 3, 1] + [0, 1, -2, 5, 0]).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + r.normal(size=n) > 0.8).astype(int) + (x[:, 2] > -2)
    params, losses = fit_linear_probe(
        x, y, num_classes=c, epochs=600, lr=0.5, momentum=0.9, weight_decay=wd, batch_size=None
    )
    mean, std = feature_standardisation(x)
    xs = (x - mean) / std
    ref = LogisticRegression(C=1.0 / (wd * n), tol=1e-10, max_iter=10_000).fit(xs, y)
    logits = x @ params["kernel"] + params["bias"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(probs, ref.predict_proba(xs), atol=2e-3)
    assert losses.shape == (600,) and losses[-1] < losses[0]


def test_separated_clusters_give_100_percent():
    x, y = clusters(1, 600, 16, 8)
    acc = linear_probe(x[:400], y[:400], x[400:], y[400:], num_classes=8, epochs=15, batch_size=64)
    assert acc["top1"] == 100.0 and acc["top5"] == 100.0 and acc["train_top1"] == 100.0


def test_random_labels_give_chance():
    r = np.random.default_rng(2)
    x = r.normal(size=(1600, 8)).astype(np.float32)
    y = r.integers(0, 4, 1600)
    acc = linear_probe(x[:600], y[:600], x[600:], y[600:], num_classes=4, epochs=10)
    # Chance is 25% (s.d. 1.4% over 1000 test points).
    assert 19.0 < acc["top1"] < 31.0
    assert acc["top5"] == 100.0


def test_deterministic_given_seed():
    x, y = clusters(3, 200, 6, 3, spread=3.0)
    kw = dict(num_classes=3, epochs=3, batch_size=32, weight_decay=1e-3)
    a, la = fit_linear_probe(x, y, seed=7, **kw)
    b, lb = fit_linear_probe(x, y, seed=7, **kw)
    c, _ = fit_linear_probe(x, y, seed=8, **kw)
    np.testing.assert_array_equal(a["kernel"], b["kernel"])
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a["kernel"], c["kernel"])  # the seed orders the minibatches


def test_weight_decay_shrinks_weights_not_bias():
    x, y = clusters(4, 120, 4, 2)
    kw = dict(num_classes=2, epochs=50, batch_size=None)
    free, _ = fit_linear_probe(x, y, weight_decay=0.0, **kw)
    decayed, _ = fit_linear_probe(x, y, weight_decay=0.5, **kw)
    assert np.linalg.norm(decayed["kernel"]) < 0.5 * np.linalg.norm(free["kernel"])


def test_test_mask_counts_only_valid_rows():
    x, y = clusters(5, 300, 8, 4)
    test_x = np.concatenate([x[200:], np.zeros((10, 8), np.float32)])
    test_y = np.concatenate([y[200:], np.full(10, 3)])
    mask = np.arange(110) < 100
    kw = dict(num_classes=4, epochs=10, batch_size=50)
    masked = linear_probe(x[:200], y[:200], test_x, test_y, test_mask=mask, **kw)
    plain = linear_probe(x[:200], y[:200], x[200:], y[200:], **kw)
    assert masked == plain


def test_constant_feature_does_not_explode():
    x, y = clusters(6, 100, 3, 2)
    x[:, 1] = 0.0  # a dead unit on the training set
    _, std = feature_standardisation(x)
    assert std[1] == 1.0
    test = x[:10].copy()
    test[:, 1] = 1.0
    acc = linear_probe(x, y, test, y[:10], num_classes=2, epochs=5, batch_size=None)
    assert np.isfinite(acc["train_loss"]) and acc["top1"] == 100.0


def test_bad_inputs_raise():
    x, y = clusters(7, 20, 3, 2)
    with pytest.raises(ValueError, match="train_labels must be integers"):
        fit_linear_probe(x, y + 2, num_classes=2)
    with pytest.raises(ValueError, match="train_feats must be"):
        fit_linear_probe(x[0], y, num_classes=2)
    with pytest.raises(ValueError, match="epochs"):
        fit_linear_probe(x, y, num_classes=2, epochs=0)
    with pytest.raises(ValueError, match="lr > 0"):
        fit_linear_probe(x, y, num_classes=2, lr=-1.0)
    with pytest.raises(ValueError, match="test_feats"):
        linear_probe(x, y, x[:, :2], y, num_classes=2)
    params = init_online_probe(jax.random.key(0), 3, 2)
    with pytest.raises(ValueError, match="probe kernel expects 3"):
        online_probe_loss(params, jnp.ones((4, 5)), jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match="integers"):
        online_probe_loss(params, jnp.ones((4, 3)), jnp.zeros(4))
