"""The supervised baseline: cross entropy of every view vs numpy, gradients by the chain rule
through a numpy head gradient, jit == pmap on 8 devices, and its checks."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import build, build_methods
from ssl_jax import config as cfg
from ssl_jax.methods.networks import SiameseNet
from ssl_jax.methods.supervised import Supervised, supervised
from ssl_jax.models.heads import MLP, LinearClassifier
from tests.methods import harness


def _config(**overrides):
    return harness.tiny_config("supervised", **overrides)


def _np_cross_entropy(logits, labels, alpha):
    """Mean softmax cross entropy with label smoothing, and its gradient w.r.t. the logits."""
    logits = np.asarray(logits, np.float64)
    k = logits.shape[1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    target = (1 - alpha) * np.eye(k)[labels] + alpha / k
    n = logits.shape[0]
    loss = -(target * log_p).sum() / n
    return loss, (np.exp(log_p) - target) / n


def _setup(config, seed=0, local_views=0):
    """The method, initialised variables, random float views (2 of 32 px + ``local_views``
    of 16 px) and labels. The loss takes any float views; the augmentation recipes are
    tested in tests/augment, and compiling one here would cost many CPU seconds."""
    method = build.method(config, harness.NUM_TRAIN_EXAMPLES)
    rng = np.random.default_rng(seed)
    b = harness.BATCH
    shapes = [(b, 32, 32, 3)] * 2 + [(b, 16, 16, 3)] * local_views
    views = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes]
    labels = jnp.asarray(rng.integers(0, 10, size=(b,)), jnp.int32)
    variables = harness.fast_jit(functools.partial(method.net.init, train=True))(
        jax.random.key(seed), views[0]
    )
    return method, variables, views, labels


def _encoder_forward(config, enc_params, enc_stats, views):
    """Backbone features of the concatenated views (one BN batch per resolution)."""
    encoder = build.encoder(config)
    sizes = sorted({v.shape[1] for v in views}, key=[v.shape[1] for v in views].index)
    parts = []
    for size in sizes:
        x = jnp.concatenate([v for v in views if v.shape[1] == size])
        h, _ = encoder.apply(
            {"params": enc_params, "batch_stats": enc_stats}, x, train=True, mutable=["batch_stats"]
        )
        parts.append(h)
    return jnp.concatenate(parts)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"loss.label_smoothing": 0.1},
        # 2 global + 2 local crops of another size: every crop is a training example.
        {"local_views": 2},
    ],
    ids=["two_views", "label_smoothing", "multi_crop"],
)
def test_loss_and_gradients_match_numpy(overrides):
    overrides = dict(overrides)
    local_views = overrides.pop("local_views", 0)
    config = _config(**overrides)
    method, variables, views, labels = _setup(config, local_views=local_views)
    params, stats = variables["params"], variables["batch_stats"]
    num_views = len(views)
    alpha = overrides.get("loss.label_smoothing", 0.0)

    def loss_fn(p, v, y):
        return method.loss(p, stats, {}, v, jax.random.key(9), jnp.int32(0), labels=y)

    grad_fn = harness.fast_jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss, out), grads = grad_fn(params, views, labels)

    # Independent forward: backbone features, then a numpy linear head and cross entropy.
    enc_fwd = lambda p: _encoder_forward(config, p, stats["encoder"], views)
    h = harness.fast_jit(enc_fwd)(params["encoder"])
    enc_vjp = harness.fast_jit(lambda p, dh: jax.vjp(enc_fwd, p)[1](dh)[0])
    head = params["projector"]["linear"]
    h_np = np.asarray(h, np.float64)
    logits = h_np @ np.asarray(head["kernel"], np.float64) + np.asarray(head["bias"], np.float64)
    targets = np.tile(np.asarray(labels), num_views)
    ref_loss, dlogits = _np_cross_entropy(logits, targets, alpha)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)
    np.testing.assert_allclose(float(out.metrics["cross_entropy"]), ref_loss, rtol=1e-5)
    acc = np.mean(logits.argmax(axis=1) == targets)
    np.testing.assert_allclose(float(out.metrics["train_top1"]), acc, atol=1e-6)

    # Head gradients in closed form; backbone gradients = the backbone's VJP of dL/dh.
    np.testing.assert_allclose(
        grads["projector"]["linear"]["kernel"], h_np.T @ dlogits, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        grads["projector"]["linear"]["bias"], dlogits.sum(axis=0), rtol=1e-4, atol=1e-7
    )
    dh = dlogits @ np.asarray(head["kernel"], np.float64).T
    ref_enc_grads = enc_vjp(params["encoder"], jnp.asarray(dh, jnp.float32))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        grads["encoder"],
        ref_enc_grads,
    )

    # What the train step and the evaluation read.
    n = labels.shape[0]
    np.testing.assert_allclose(out.features, h[:n], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.embeddings[0], h[:n], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.embeddings[1], h[n : 2 * n], rtol=1e-6, atol=1e-6)
    assert out.aux == {}
    assert jax.tree.structure(out.batch_stats) == jax.tree.structure(stats)

    if not overrides and not local_views:  # eager (op by op) and jitted agree
        eager, _ = loss_fn(params, views, labels)
        np.testing.assert_allclose(float(eager), float(loss), rtol=1e-5)


def test_encode_is_eval_mode_backbone():
    config = _config()
    method, variables, views, _ = _setup(config)
    params, stats = variables["params"], variables["batch_stats"]
    feats = method.encode(params, stats, views[0])
    ref = build.encoder(config).apply(
        {"params": params["encoder"], "batch_stats": stats["encoder"]}, views[0], train=False
    )
    np.testing.assert_allclose(feats, ref, rtol=1e-6)
    assert feats.shape == (views[0].shape[0], build.encoder(config).num_features)


@pytest.fixture(scope="module")
def jit_run():
    """Three steps of the shared jitted train step on the 8-device mesh (batch 16)."""
    return harness.run(_config(), num_steps=3)


def test_train_step_on_8_devices_uses_labels(jit_run):
    r = jit_run
    harness.assert_trains(r)
    assert r.method.needs_labels
    for i, m in enumerate(r.metrics):
        assert m["loss"] == m["cross_entropy"]
        # The step fed this batch's labels: recompute the step-0 loss from its state.
        if i == 0:
            views = harness.step_views(r, 0)
            y = jnp.asarray(harness.images(10)[1])
            state = r.states[0]
            loss, _ = r.method.loss(
                state.params, state.batch_stats, state.aux, views, None, 0, labels=y
            )
            np.testing.assert_allclose(m["loss"], float(loss), rtol=1e-5)


def test_pmap_loss_matches_global_loss(n_devices):
    """Under pmap (per-device rows, BN statistics and means over the mapped axis) the loss,
    accuracy and summed gradients equal the global-batch ones."""
    method, variables, views, labels = _setup(_config(), local_views=2)
    method_p = build.method(_config(**{"train.use_pmap": True}), harness.NUM_TRAIN_EXAMPLES)
    params, stats = variables["params"], variables["batch_stats"]

    def loss_fn(m, p, v, y, axis_name=None):
        return m.loss(p, stats, {}, v, None, 0, axis_name=axis_name, labels=y)

    (loss, out), grads = harness.fast_jit(
        jax.value_and_grad(functools.partial(loss_fn, method), has_aux=True)
    )(params, views, labels)

    def per_device(p, v, y):
        fn = functools.partial(loss_fn, method_p, axis_name=build.PMAP_AXIS)
        (loss, out), g = jax.value_and_grad(fn, has_aux=True)(p, v, y)
        # Each device differentiates the global loss through its own rows: sum them.
        return loss, out.metrics["train_top1"], jax.lax.psum(g, build.PMAP_AXIS)

    shard = lambda x: x.reshape(n_devices, -1, *x.shape[1:])
    args = (params, [shard(v) for v in views], shard(labels))
    mapped = jax.pmap(per_device, axis_name=build.PMAP_AXIS, in_axes=(None, 0, 0))
    compiled = mapped.lower(*args).compile(compiler_options=harness.FAST_COMPILE)
    loss_p, acc_p, grads_p = compiled(*args)
    np.testing.assert_allclose(loss_p, np.full(n_devices, float(loss)), rtol=1e-5)
    np.testing.assert_allclose(acc_p, np.full(n_devices, float(out.metrics["train_top1"])))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-6), grads_p, grads
    )


def test_builder_is_registered_and_reads_the_config():
    assert build_methods.BUILDERS["supervised"] is supervised and "supervised" in cfg.METHODS
    config = _config(**{"loss.label_smoothing": 0.2})
    method = build.method(config, 100)
    assert isinstance(method, Supervised)
    assert method.num_classes == config.data.num_classes == 10
    assert method.label_smoothing == 0.2
    assert method.needs_labels
    del config.loss["label_smoothing"]
    assert supervised(config, 100).label_smoothing == 0.0


def test_bad_inputs_raise():
    config = _config()
    method, variables, views, labels = _setup(config)
    p, s = variables["params"], variables["batch_stats"]
    with pytest.raises(ValueError, match="needs labels="):
        method.loss(p, s, {}, views, None, 0)
    with pytest.raises(ValueError, match="labels must have shape"):
        method.loss(p, s, {}, views, None, 0, labels=labels[:3])
    with pytest.raises(ValueError, match="labels must be in"):
        method.loss(p, s, {}, views, None, 0, labels=labels.at[0].set(10))
    enc = build.encoder(config)
    with pytest.raises(ValueError, match="LinearClassifier"):
        Supervised(view_fn=method.view_fn, net=SiameseNet(encoder=enc, projector=MLP([], 10)))
    with pytest.raises(ValueError, match="no predictor"):
        Supervised(
            view_fn=method.view_fn,
            net=SiameseNet(encoder=enc, projector=LinearClassifier(10), predictor=MLP([], 10)),
        )
    with pytest.raises(ValueError, match="needs_labels"):
        dataclasses.replace(method, needs_labels=False)
    with pytest.raises(ValueError, match="label_smoothing"):
        dataclasses.replace(method, label_smoothing=1.5)


def test_config_variants_validate():
    for name in ("", "tiny", "demo"):
        c = harness.load_config("supervised_cifar10.py", name)
        cfg.validate(c, num_devices=8)
        assert c.method == "supervised" and c.augment.recipe == "simclr_cifar"
    full = harness.load_config("supervised_cifar10.py", "")
    assert full.model.encoder == "resnet18" and cfg.peak_learning_rate(full) == pytest.approx(0.2)
