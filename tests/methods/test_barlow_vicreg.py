"""Barlow Twins and VICReg through the shared step on 8 devices: losses and their terms."""

import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.methods import BarlowTwins, SiameseNet, VICReg
from tests.methods import harness, numpy_ref


def _z(r, i):
    s = r.states[i]
    x = jnp.concatenate(harness.step_views(r, i)[:2])
    _, z, _ = harness.forward_train(r.method.net, s.params, s.batch_stats, x)
    z = np.asarray(z, np.float64)
    return z[: harness.BATCH], z[harness.BATCH :]


def test_barlow_twins_logs_scaled_loss_and_terms():
    r = harness.run(harness.tiny_config("barlow_twins"), num_steps=2)
    m = r.method
    assert isinstance(m, BarlowTwins) and (m.lambda_, m.scale) == (0.0051, 0.1)
    assert len(m.net.projector.hidden_dims) == 2 and not m.net.projector.last_bn
    harness.assert_trains(r)
    for i in range(2):
        loss, on, off = numpy_ref.barlow_twins(*_z(r, i), 0.0051)
        got = r.metrics[i]
        np.testing.assert_allclose(got["on_diag"], on, rtol=2e-4)
        np.testing.assert_allclose(got["off_diag"], off, rtol=2e-4)
        np.testing.assert_allclose(got["barlow_twins"], 0.1 * loss, rtol=2e-4)
        np.testing.assert_allclose(got["loss"], 0.1 * loss, rtol=2e-4)


def test_vicreg_logs_loss_and_each_term():
    r = harness.run(harness.tiny_config("vicreg"), num_steps=2)
    m = r.method
    assert isinstance(m, VICReg) and (m.sim_coeff, m.std_coeff, m.cov_coeff) == (25, 25, 1)
    harness.assert_trains(r)
    for i in range(2):
        loss, inv, var, cov = numpy_ref.vicreg(*_z(r, i))
        got = r.metrics[i]
        np.testing.assert_allclose(got["invariance"], inv, rtol=2e-4)
        np.testing.assert_allclose(got["variance"], var, rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(got["covariance"], cov, rtol=2e-4)
        np.testing.assert_allclose(got["vicreg"], loss, rtol=2e-4)


def test_barlow_twins_rejects_bad_scale():
    from ssl_jax.models import MLP, ConvNet

    def view_fn(key, x):
        return [x, x]

    net = SiameseNet(ConvNet(widths=(8,)), MLP([8], 4))
    with pytest.raises(ValueError, match="scale"):
        BarlowTwins(view_fn=view_fn, net=net, scale=0.0)
