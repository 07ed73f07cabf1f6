"""Relative patch position through the shared step on 8 devices: the patch pairs it trained
on, its loss and accuracy against numpy, the gradient at the logits, whole-image encode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import build
from ssl_jax.augment import patches
from ssl_jax.methods import LateFusionNet, PatchPosition
from ssl_jax.methods.common import per_example_keys
from tests.methods import harness, numpy_ref


@pytest.fixture(scope="module")
def run():
    return harness.run(harness.tiny_config("patch_position"), num_steps=2)


def test_patch_position_trains_on_patch_pairs_with_the_numpy_loss(run):
    r, m = run, run.method
    assert isinstance(m, PatchPosition) and isinstance(m.net, LateFusionNet)
    assert (m.patch_size, m.gap, m.jitter, m.grid, m.input_size) == (9, 12, 1, 2, 16)
    harness.assert_trains(r)
    n = harness.BATCH
    inputs = harness.fast_jit(m.inputs)
    pairs = harness.fast_jit(
        jax.vmap(lambda k, v: patches.patch_pair(k, v, patch_size=9, gap=12, jitter=1, grid=2))
    )
    for i in range(2):
        s = r.states[i]
        (view,) = harness.step_views(r, i)
        keys = per_example_keys(harness.loss_key(r, i), n, None)
        x, labels = inputs(keys, view)
        assert x.shape == (n, 2, 16, 16, 3) and labels.shape == (n,)
        # The pairs before resizing are patch_pair's crops of the step's views.
        raw, raw_labels = pairs(keys, view)
        np.testing.assert_array_equal(labels, raw_labels)
        resized = jax.vmap(jax.vmap(lambda p: jax.image.resize(p, (16, 16, 3), "linear")))(raw)
        np.testing.assert_allclose(x, resized, atol=1e-5)
        h, logits = harness.forward_train(m.net, s.params, s.batch_stats, x)
        assert h.shape == (n, 2, m.net.encoder.num_features) and logits.shape == (n, 8)
        logits = np.asarray(logits, np.float64)
        want = numpy_ref.cross_entropy(logits, np.asarray(labels))
        np.testing.assert_allclose(r.metrics[i]["patch_position"], want, rtol=2e-4)
        np.testing.assert_allclose(r.metrics[i]["loss"], want, rtol=2e-4)
        acc = np.mean(np.argmax(logits, 1) == np.asarray(labels))
        np.testing.assert_allclose(r.metrics[i]["patch_position_acc"], acc, atol=1.5 / n)


def test_loss_gradient_at_the_output_bias_is_softmax_minus_one_hot(run):
    """d loss / d b_out = mean_i (softmax(logits_i) - onehot(y_i)), the cross entropy's
    gradient at the logits, through the method's loss (jitted, one device)."""
    r, m = run, run.method
    s = r.states[0]
    (view,) = harness.step_views(r, 0)
    key = harness.loss_key(r, 0)

    def loss(params):
        return m.loss(params, s.batch_stats, s.aux, [view], key, s.step)

    grad_fn = harness.fast_jit(jax.grad(lambda p: loss(p)[0]))
    grads = grad_fn(s.params)
    x, labels = harness.fast_jit(m.inputs)(per_example_keys(key, harness.BATCH, None), view)
    _, logits = harness.forward_train(m.net, s.params, s.batch_stats, x)
    probs = numpy_ref.softmax(np.asarray(logits, np.float64))
    want = np.mean(probs - np.eye(8)[np.asarray(labels)], axis=0)
    np.testing.assert_allclose(grads["head"]["out"]["bias"], want, rtol=1e-4, atol=1e-6)


def test_encode_gives_whole_image_features(run):
    r, m = run, run.method
    s = r.states[-1]
    images = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, 3)), jnp.float32)
    feats = harness.fast_jit(lambda p, b, x: m.encode(p, b, x))(s.params, s.batch_stats, images)
    assert feats.shape == (4, m.net.encoder.num_features)
    want = m.net.encoder.apply(
        {"params": s.params["encoder"], "batch_stats": s.batch_stats["encoder"]},
        images,
        train=False,
    )
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)


def test_patch_norm_standardises_each_patch_and_whole_images():
    """With ``patch_norm='tile'`` the pretext's patches are patch_pair's crops, each with
    zero mean and unit variance over its pixels and channels (numpy), and encode applies
    the same normalisation to whole images."""
    from ssl_jax.models import MLP, ConvNet

    net = LateFusionNet(encoder=ConvNet(widths=(8,)), head=MLP([8], 8))
    m = PatchPosition(
        view_fn=lambda k, x: [x], net=net, patch_size=13, gap=3, jitter=1, grid=2,
        patch_norm="tile",
    )  # fmt: skip
    rng = np.random.default_rng(0)
    view = jnp.asarray(rng.normal(1.0, 2.0, size=(32, 32, 3)), jnp.float32)
    key = jax.random.key(3)
    got, label = m.pretext(key, view)
    raw, raw_label = patches.patch_pair(key, view, patch_size=13, gap=3, jitter=1, grid=2)
    raw = np.asarray(raw, np.float64)
    mean = raw.mean(axis=(-3, -2, -1), keepdims=True)
    want = (raw - mean) / np.sqrt(raw.var(axis=(-3, -2, -1), keepdims=True) + 1e-5)
    assert int(label) == int(raw_label)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    images = jnp.asarray(rng.normal(1.0, 2.0, size=(2, 32, 32, 3)), jnp.float32)
    variables = m.init(jax.random.key(0), images)
    feats = m.encode(variables["params"], variables["batch_stats"], images)
    again = m.encode(variables["params"], variables["batch_stats"], 3.0 * images - 0.5)
    np.testing.assert_allclose(feats, again, rtol=1e-3, atol=1e-4)


def test_patch_position_rejects_bad_arguments():
    from ssl_jax import build_methods
    from ssl_jax.models import MLP, ConvNet

    enc = ConvNet(widths=(8,))

    def view_fn(key, x):
        return [x]

    net = LateFusionNet(encoder=enc, head=MLP([8], 8))
    kw = dict(view_fn=view_fn, patch_size=8, gap=3, jitter=1)
    with pytest.raises(ValueError, match="8 outputs"):
        PatchPosition(net=LateFusionNet(encoder=enc, head=MLP([8], 4)), **kw)
    with pytest.raises(ValueError, match="gap"):
        PatchPosition(net=net, **{**kw, "gap": -1})
    with pytest.raises(ValueError, match="input_size"):
        PatchPosition(net=net, input_size=0, **kw)
    with pytest.raises(ValueError, match=r"grid must be one of \(3, 2\), got 4"):
        PatchPosition(net=net, grid=4, **kw)
    with pytest.raises(ValueError, match="patch_norm must be one of"):
        PatchPosition(net=net, patch_norm="image", **kw)
    c = harness.tiny_config("patch_position", **{"patch_position.grid": 1})
    with pytest.raises(ValueError, match=r"grid must be one of \(3, 2\), got 1"):
        build_methods.patch_position(c, 100)
    c = harness.tiny_config("patch_position", **{"patch_position.gap": 13})
    with pytest.raises(ValueError, match="needs 33-px views"):
        build_methods.patch_position(c, 100)
    assert isinstance(build.method(harness.tiny_config("patch_position"), 100), PatchPosition)
