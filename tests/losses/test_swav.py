"""SwAV Sinkhorn-Knopp codes and swapped-prediction loss against plain numpy (float64).

The numpy Sinkhorn is the paper's Algorithm (``distributed_sinkhorn`` of the official code on
one process), in the ordinary (not log) domain. Gradients of the loss are finite
differences of the numpy loss with the codes held fixed, which is what SwAV's
no-backpropagation-through-codes means.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import sinkhorn_knopp, swav_codes, swav_loss
from tests.losses.helpers import fd_grad


def np_sinkhorn(scores, epsilon, num_iters):
    q = np.exp(np.asarray(scores, np.float64) / epsilon).T  # K x B, as in the paper
    k, b = q.shape
    q /= q.sum()
    for _ in range(num_iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    return (q * b).T


def np_log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def np_swav_codes(scores, num_high_res, epsilon, num_iters, queue_scores=None):
    codes = []
    for i in range(num_high_res):
        s = scores[i] if queue_scores is None else np.concatenate([queue_scores[i], scores[i]])
        codes.append(np_sinkhorn(s, epsilon, num_iters)[-len(scores[i]) :])
    return codes


def np_swav_loss(scores, codes, temperature):
    """``main_swav.py``: per assigned crop, mean over the other crops of the batch-mean CE."""
    loss = 0.0
    for i, q in enumerate(codes):
        sub = 0.0
        for v in range(len(scores)):
            if v != i:
                sub -= np.mean(np.sum(q * np_log_softmax(scores[v] / temperature), axis=1))
        loss += sub / (len(scores) - 1)
    return loss / len(codes)


def cosine_scores(key, n_crops, b, k, d=8):
    """Scores of normalised embeddings against normalised prototypes, in [-1, 1]."""
    kz, kc = jax.random.split(jax.random.key(key))
    z = jax.random.normal(kz, (n_crops, b, d))
    c = jax.random.normal(kc, (k, d))
    z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    c = c / jnp.linalg.norm(c, axis=-1, keepdims=True)
    return [np.asarray(x) for x in z @ c.T]


# -- Sinkhorn-Knopp ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "k", "epsilon", "num_iters"), [(8, 5, 0.05, 3), (12, 7, 0.05, 1), (6, 10, 0.1, 10)]
)
def test_sinkhorn_matches_numpy(b, k, epsilon, num_iters):
    (scores,) = cosine_scores(b * k, 1, b, k)
    codes = sinkhorn_knopp(scores, epsilon=epsilon, num_iters=num_iters)
    expected = np_sinkhorn(scores, epsilon, num_iters)
    np.testing.assert_allclose(codes, expected, rtol=1e-4, atol=1e-6)
    jitted = jax.jit(lambda s: sinkhorn_knopp(s, epsilon=epsilon, num_iters=num_iters))
    np.testing.assert_allclose(jitted(scores), codes, rtol=1e-5, atol=1e-7)


def test_sinkhorn_marginals():
    (scores,) = cosine_scores(1, 1, 12, 4)
    codes = np.asarray(sinkhorn_knopp(scores))
    # After the final rescale every sample's code is a distribution.
    np.testing.assert_allclose(codes.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(codes >= 0)
    # Run to convergence: every prototype gets an equal share B/K of the batch.
    converged = np.asarray(sinkhorn_knopp(scores, num_iters=500))
    np.testing.assert_allclose(converged.sum(axis=0), 12 / 4, rtol=1e-4)
    np.testing.assert_allclose(converged.sum(axis=1), 1.0, rtol=1e-5)


def test_sinkhorn_large_scores_stay_finite_and_no_gradient():
    # exp(50 / 0.05) overflows the paper's formula; the log-domain form does not.
    scores = 50.0 * jnp.asarray(cosine_scores(2, 1, 6, 3)[0])
    codes = sinkhorn_knopp(scores)
    assert np.all(np.isfinite(codes))
    np.testing.assert_allclose(np.asarray(codes).sum(axis=1), 1.0, rtol=1e-5)
    grad = jax.grad(lambda s: jnp.sum(sinkhorn_knopp(s) * jnp.arange(3.0)))(scores)
    np.testing.assert_array_equal(grad, 0.0)


def test_sinkhorn_vmap():
    scores = np.stack(cosine_scores(3, 3, 5, 4))
    out = jax.vmap(sinkhorn_knopp)(scores)
    for o, s in zip(out, scores, strict=True):
        np.testing.assert_allclose(o, np_sinkhorn(s, 0.05, 3), rtol=1e-4, atol=1e-6)


def test_sinkhorn_errors():
    s = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="scores must have rank 2"):
        sinkhorn_knopp(jnp.ones((4,)))
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        sinkhorn_knopp(s, epsilon=0.0)
    with pytest.raises(ValueError, match="num_iters must be an integer >= 1"):
        sinkhorn_knopp(s, num_iters=0)
    with pytest.raises(ValueError, match="at least 1 along axis 1"):
        sinkhorn_knopp(jnp.ones((4, 0)))


# -- swapped prediction ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_crops", "num_high_res", "b", "k", "temperature"),
    [(4, 2, 6, 5, 0.1), (2, 2, 4, 3, 0.1), (3, 1, 5, 4, 0.5)],
)
def test_swav_loss_matches_numpy(n_crops, num_high_res, b, k, temperature):
    scores = cosine_scores(n_crops * 10 + b, n_crops, b, k)
    codes = np_swav_codes(scores, num_high_res, 0.05, 3)
    fn = lambda *s: swav_loss(list(s), num_high_res=num_high_res, temperature=temperature)
    value, grads = jax.value_and_grad(fn, argnums=tuple(range(n_crops)))(*scores)
    np.testing.assert_allclose(value, np_swav_loss(scores, codes, temperature), rtol=2e-5)
    ref = fd_grad(lambda *s: np_swav_loss(list(s), codes, temperature), scores)
    for g, g_ref in zip(grads, ref, strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(jax.jit(fn)(*scores), value, rtol=1e-6)


def test_swav_loss_with_queue_matches_numpy():
    scores = cosine_scores(5, 3, 4, 6)
    queue = cosine_scores(6, 2, 10, 6)
    codes = np_swav_codes(scores, 2, 0.05, 3, queue_scores=queue)
    value = swav_loss(scores, queue_scores=queue)
    np.testing.assert_allclose(value, np_swav_loss(scores, codes, 0.1), rtol=2e-5)
    assert not np.isclose(value, swav_loss(scores), rtol=1e-3)
    # The queue only shapes the targets: no gradient reaches it.
    grad = jax.grad(lambda q: swav_loss(scores, queue_scores=list(q)))(np.stack(queue))
    np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("with_queue", [False, True])
def test_swav_codes_match_numpy_and_feed_the_loss(with_queue):
    scores = cosine_scores(8, 3, 4, 6)
    queue = cosine_scores(9, 2, 10, 6) if with_queue else None
    codes = swav_codes(scores, num_iters=4, queue_scores=queue)
    ref = np_swav_codes(scores, 2, 0.05, 4, queue_scores=queue)
    for c, r in zip(codes, ref, strict=True):
        assert c.shape == (4, 6)
        np.testing.assert_allclose(c, r, rtol=1e-4, atol=1e-6)
    # Given codes, the loss is the numpy loss on them, and its gradient is that of the
    # loss with the codes held fixed (none flows into them).
    fn = lambda *s: swav_loss(list(s), codes=codes)
    value, grads = jax.value_and_grad(fn, argnums=(0, 1, 2))(*scores)
    np.testing.assert_allclose(value, np_swav_loss(scores, ref, 0.1), rtol=2e-5)
    np.testing.assert_allclose(value, swav_loss(scores, num_iters=4, queue_scores=queue), rtol=1e-6)
    fd = fd_grad(lambda *s: np_swav_loss(list(s), ref, 0.1), scores)
    for g, g_ref in zip(grads, fd, strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=2e-5)
    code_grad = jax.grad(lambda c: swav_loss(scores, codes=list(c)))(jnp.stack(codes))
    np.testing.assert_array_equal(code_grad, 0.0)


def test_swav_loss_lower_when_crops_agree():
    scores = cosine_scores(7, 4, 8, 5)
    agreeing = [scores[0]] * 4
    assert swav_loss(agreeing) < swav_loss(scores)


def test_swav_loss_errors():
    s = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="swav_loss needs at least 2 crops"):
        swav_loss([s])
    with pytest.raises(ValueError, match="swav_codes needs at least 2 crops"):
        swav_codes([s])
    with pytest.raises(ValueError, match="swav_loss: scores must be a list of"):
        swav_loss(jnp.ones((2, 4, 3)))
    with pytest.raises(ValueError, match="same shape"):
        swav_loss([s, jnp.ones((4, 2))])
    with pytest.raises(ValueError, match="num_high_res must be an integer in"):
        swav_loss([s, s], num_high_res=3)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        swav_loss([s, s], temperature=0.0)
    with pytest.raises(ValueError, match="one array per high-resolution crop"):
        swav_loss([s, s], queue_scores=[s])
    with pytest.raises(ValueError, match="3 prototypes"):
        swav_loss([s, s], queue_scores=[s, jnp.ones((4, 2))])
    with pytest.raises(ValueError, match="either codes or queue_scores"):
        swav_loss([s, s], codes=[s, s], queue_scores=[s, s])
    with pytest.raises(ValueError, match="codes needs one array per high-resolution crop"):
        swav_loss([s, s], codes=[s])
    with pytest.raises(ValueError, match=r"codes\[1\] must have \[4, 3\]"):
        swav_loss([s, s], codes=[s, jnp.ones((5, 3))])
    with pytest.raises(ValueError, match="num_high_res must be an integer in"):
        swav_codes([s, s], num_high_res=3)
