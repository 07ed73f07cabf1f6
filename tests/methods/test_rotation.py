"""Rotation prediction through the shared step on 8 devices: loss, accuracy, monitors."""

import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.methods import RotationPrediction, SiameseNet
from tests.methods import harness, numpy_ref


def test_rotation_trains_on_four_rotations_of_one_view():
    r = harness.run(harness.tiny_config("rotation"), num_steps=2)
    m = r.method
    assert isinstance(m, RotationPrediction)
    harness.assert_trains(r)
    n = harness.BATCH
    for i in range(2):
        s = r.states[i]
        views = harness.step_views(r, i)
        assert len(views) == 1
        # Independent rotation (numpy, counter-clockwise), copies of an image adjacent.
        x = np.asarray(views[0])
        rotated = np.stack([np.rot90(x, k, axes=(1, 2)) for k in range(4)], axis=1)
        rotated = rotated.reshape(4 * n, *x.shape[1:])
        labels = np.tile(np.arange(4), n)
        _, logits, _ = harness.forward_train(m.net, s.params, s.batch_stats, jnp.asarray(rotated))
        logits = np.asarray(logits, np.float64)
        want = numpy_ref.cross_entropy(logits, labels)
        np.testing.assert_allclose(r.metrics[i]["rotation"], want, rtol=2e-4)
        acc = np.mean(np.argmax(logits, 1) == labels)
        np.testing.assert_allclose(r.metrics[i]["rotation_acc"], acc, atol=1.5 / (4 * n))
    # Monitors: upright vs 180-degree features are different inputs, so alignment > 0.
    assert all(x["alignment"] > 0 for x in r.metrics)


def test_rotation_needs_a_four_way_head():
    from ssl_jax.models import MLP, ConvNet, LinearClassifier

    def view_fn(key, x):
        return [x]

    enc = ConvNet(widths=(8,))
    with pytest.raises(ValueError, match="LinearClassifier"):
        RotationPrediction(view_fn=view_fn, net=SiameseNet(enc, MLP([8], 4)))
    with pytest.raises(ValueError, match="LinearClassifier"):
        RotationPrediction(view_fn=view_fn, net=SiameseNet(enc, LinearClassifier(3)))
