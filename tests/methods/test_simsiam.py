"""SimSiam through the shared step on 8 devices: loss, heads, no target network."""

import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.methods import SiameseNet, SimSiam
from tests.methods import harness, numpy_ref


def test_simsiam_trains_with_the_paper_heads():
    r = harness.run(harness.tiny_config("simsiam"), num_steps=2)
    m = r.method
    assert isinstance(m, SimSiam) and r.states[0].aux == {}
    proj, pred = m.net.projector, m.net.predictor
    # 3-layer projector with an affine-free output BN; 2-layer bottleneck predictor.
    assert len(proj.hidden_dims) == 2 and proj.last_bn and not proj.last_bn_affine
    assert len(pred.hidden_dims) == 1 and not pred.last_bn
    assert "out_bn" in r.states[0].batch_stats["projector"]
    assert "out_bn" not in r.states[0].params["projector"]  # no affine parameters
    harness.assert_trains(r)
    n = harness.BATCH
    for i in range(2):
        s = r.states[i]
        x = jnp.concatenate(harness.step_views(r, i)[:2])
        _, z, p = (
            np.asarray(a, np.float64)
            for a in harness.forward_train(m.net, s.params, s.batch_stats, x)
        )
        want = numpy_ref.simsiam(p[:n], p[n:], z[:n], z[n:])
        np.testing.assert_allclose(r.metrics[i]["simsiam"], want, rtol=2e-4, atol=1e-6)
        assert -1.0 <= r.metrics[i]["simsiam"] <= 1.0


def test_simsiam_needs_both_heads():
    from ssl_jax.models import MLP, ConvNet

    def view_fn(key, x):
        return [x, x]

    with pytest.raises(ValueError, match="projector and a predictor"):
        SimSiam(view_fn=view_fn, net=SiameseNet(ConvNet(widths=(8,)), MLP([8], 4)))
