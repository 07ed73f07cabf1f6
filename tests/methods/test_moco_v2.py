"""MoCo v2 (queue of momentum keys) through the shared step on 8 devices, jit and pmap."""

import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.methods import MoCoV2, SiameseNet
from tests.methods import harness


def np_info_nce(q, k, queue, t):
    """He et al. 2020, Alg. 1: logits [q.k+, q.queue] / t, cross entropy with label 0."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    queue = queue / np.linalg.norm(queue, axis=1, keepdims=True)
    logits = np.concatenate([np.sum(q * k, 1, keepdims=True), q @ queue.T], axis=1) / t
    m = logits.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(1))
    return float(np.mean(lse - logits[:, 0]))


def forward(net, params, stats, x):
    _, z, _ = harness.forward_train(net, params, stats, x)
    return np.asarray(z, np.float64)


@pytest.fixture(scope="module")
def symmetric_run():
    return harness.run(harness.tiny_config("moco_v2"), num_steps=3)


@pytest.mark.parametrize("symmetric", [True, False])
def test_moco_v2_queue_and_momentum_encoder(symmetric, symmetric_run):
    if symmetric:
        r = symmetric_run
    else:
        r = harness.run(harness.tiny_config("moco_v2", **{"moco.symmetric": False}), num_steps=3)
    m = r.method
    assert isinstance(m, MoCoV2) and m.queue_size == 64 and m.symmetric == symmetric
    harness.assert_trains(r)
    # Constant momentum (ema_base == ema_final == 0.99), applied exactly.
    harness.assert_ema(r, m.target_subset)
    assert all(x["ema_momentum"] == pytest.approx(0.99) for x in r.metrics)
    n_keys = (2 if symmetric else 1) * harness.BATCH
    t = m.temperature
    for i in range(3):
        old, new = r.states[i].aux, r.states[i + 1].aux
        views = harness.step_views(r, i)
        key_views = jnp.concatenate(views[:2]) if symmetric else views[1]
        k = forward(m.target_net, old["target_params"], old["target_batch_stats"], key_views)
        k = k / np.linalg.norm(k, axis=1, keepdims=True)
        # The pointer advances by the number of keys, mod K, and those rows hold the keys.
        assert int(new["ptr"]) == (int(old["ptr"]) + n_keys) % m.queue_size
        rows = (int(old["ptr"]) + np.arange(n_keys)) % m.queue_size
        np.testing.assert_allclose(new["queue"][rows], k, atol=2e-5)
        others = np.setdiff1d(np.arange(m.queue_size), rows)
        np.testing.assert_array_equal(new["queue"][others], old["queue"][others])
        np.testing.assert_allclose(np.linalg.norm(new["queue"], axis=1), 1.0, atol=1e-5)
        # The logged loss is InfoNCE of the online queries against the OLD queue.
        q_views = jnp.concatenate(views[:2]) if symmetric else views[0]
        q = forward(m.net, r.states[i].params, r.states[i].batch_stats, q_views)
        b = harness.BATCH
        if symmetric:
            want = np_info_nce(q[:b], k[b:], old["queue"], t) + np_info_nce(
                q[b:], k[:b], old["queue"], t
            )
        else:
            want = np_info_nce(q, k, old["queue"], t)
        np.testing.assert_allclose(r.metrics[i]["info_nce"], want, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(r.metrics[i]["loss"], want, rtol=2e-4, atol=2e-5)
    # 3 symmetric steps of 32 keys wrap around the 64-row queue.
    if symmetric:
        assert [int(s.aux["ptr"]) for s in r.states] == [0, 32, 0, 32]


def test_moco_v2_pmap_matches_jit(symmetric_run):
    r = symmetric_run
    c = harness.tiny_config("moco_v2", **{"train.use_pmap": True})
    metrics, state = harness.run_pmap(c, num_steps=2)
    for a, b in zip(r.metrics[:2], metrics, strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)
    np.testing.assert_allclose(state.aux["queue"], r.states[2].aux["queue"], atol=1e-4)
    assert int(state.aux["ptr"]) == int(r.states[2].aux["ptr"])


def test_moco_v2_rejects_bad_arguments():
    from ssl_jax.models import MLP, ConvNet

    enc, head = ConvNet(widths=(8,)), MLP(hidden_dims=[8], out_dim=4)

    def view_fn(key, x):
        return [x, x]

    with pytest.raises(ValueError, match="no predictor"):
        MoCoV2(view_fn=view_fn, net=SiameseNet(enc, head, head), total_steps=10)
    with pytest.raises(ValueError, match="queue_size"):
        MoCoV2(view_fn=view_fn, net=SiameseNet(enc, head), total_steps=10, queue_size=0)
    with pytest.raises(ValueError, match="total_steps"):
        MoCoV2(view_fn=view_fn, net=SiameseNet(enc, head), total_steps=0)
    with pytest.raises(ValueError, match="base"):
        MoCoV2(view_fn=view_fn, net=SiameseNet(enc, head), total_steps=5, ema_base=1.5)
