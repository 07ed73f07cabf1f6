"""SimCLR and BYOL (the lead's method modules) built from their tiny configs by the
builders, trained through the shared step on 8 devices."""

import jax.numpy as jnp
import numpy as np

from ssl_jax.methods import BYOL, SimCLR
from tests.methods import harness, numpy_ref


def _z_and_p(r, i, net, params, stats):
    x = jnp.concatenate(harness.step_views(r, i)[:2])
    _, z, p = harness.forward_train(net, params, stats, x)
    n = harness.BATCH
    z, p = np.asarray(z, np.float64), np.asarray(p, np.float64)
    return z[:n], z[n:], p[:n], p[n:]


def test_simclr_trains_and_logs_nt_xent():
    r = harness.run(harness.tiny_config("simclr"), num_steps=2)
    assert isinstance(r.method, SimCLR) and r.method.temperature == 0.5
    harness.assert_trains(r)
    for i in range(2):
        s = r.states[i]
        z1, z2, _, _ = _z_and_p(r, i, r.method.net, s.params, s.batch_stats)
        want = numpy_ref.nt_xent(z1, z2, 0.5)
        np.testing.assert_allclose(r.metrics[i]["nt_xent"], want, rtol=2e-4)


def test_byol_builder_sets_cosine_ema_and_the_target_follows_it():
    r = harness.run(harness.tiny_config("byol"), num_steps=2)
    m = r.method
    assert isinstance(m, BYOL)
    # total_steps from the run length (tiny: 4 steps), EMA from train.ema_base/final.
    assert (m.total_steps, m.ema_base, m.ema_final) == (4, 0.99, 1.0)
    harness.assert_trains(r)
    harness.assert_ema(r, lambda p: {k: v for k, v in p.items() if k != "predictor"})
    for i in range(2):
        s = r.states[i]
        _, _, p1, p2 = _z_and_p(r, i, m.net, s.params, s.batch_stats)
        z1, z2, _, _ = _z_and_p(
            r, i, m.target_net, s.aux["target_params"], s.aux["target_batch_stats"]
        )
        np.testing.assert_allclose(
            r.metrics[i]["byol"], numpy_ref.byol(p1, p2, z1, z2), rtol=2e-4, atol=1e-5
        )
