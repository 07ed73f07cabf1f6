"""MoCo v3 (in-batch momentum keys, predictor) through the shared step on 8 devices."""

import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.methods import MoCoV3, SiameseNet
from tests.methods import harness


def np_moco_v3(q1, q2, k1, k2, t):
    """Chen et al. 2021, Alg. 1: ctr(q, k) = CE(q k^T / t, arange) * 2t; ctr(q1,k2)+ctr(q2,k1)."""

    def ctr(q, k):
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        k = k / np.linalg.norm(k, axis=1, keepdims=True)
        logits = q @ k.T / t
        m = logits.max(1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logits - m).sum(1))
        return float(np.mean(lse - np.diag(logits))) * 2 * t

    return ctr(q1, k2) + ctr(q2, k1)


def test_moco_v3_trains_with_cosine_momentum():
    r = harness.run(harness.tiny_config("moco_v3"), num_steps=2)
    m = r.method
    assert isinstance(m, MoCoV3) and m.temperature == 0.2
    harness.assert_trains(r)
    harness.assert_ema(r, m.target_subset)
    assert "predictor" in r.states[0].params and "predictor" not in r.states[0].aux["target_params"]
    b = harness.BATCH
    for i in range(2):
        s = r.states[i]
        x = jnp.concatenate(harness.step_views(r, i)[:2])
        _, _, q = harness.forward_train(m.net, s.params, s.batch_stats, x)
        _, k, _ = harness.forward_train(
            m.target_net, s.aux["target_params"], s.aux["target_batch_stats"], x
        )
        q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
        want = np_moco_v3(q[:b], q[b:], k[:b], k[b:], m.temperature)
        np.testing.assert_allclose(r.metrics[i]["moco_v3"], want, rtol=2e-4, atol=2e-5)


def test_moco_v3_rejects_wrong_networks():
    from ssl_jax.models import MLP, ConvNet

    enc, head = ConvNet(widths=(8,)), MLP(hidden_dims=[8], out_dim=4)

    def view_fn(key, x):
        return [x, x]

    with pytest.raises(ValueError, match="needs a predictor"):
        MoCoV3(view_fn=view_fn, net=SiameseNet(enc, head), total_steps=10)
