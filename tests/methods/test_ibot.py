"""iBOT through the shared step on 8 devices: EMA teacher, both centres, temperatures, masks
on the student's global crops only, the loss against numpy from the paper's equations."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import build
from ssl_jax import config as cfg
from ssl_jax.methods import IBOT
from ssl_jax.methods.common import split_views
from tests.conftest import load_config
from tests.methods import harness

STEPS = 3


@pytest.fixture(scope="module")
def ibot_run():
    # tiny: ViT-Ti/8 (2 blocks), 2 x 32px + 2 x 16px crops, shared 64-output head; 2 steps per
    # epoch: temperatures warm up over 4 steps, the last layer is frozen for 2.
    return harness.run(harness.tiny_config("ibot"), num_steps=STEPS)


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def np_ibot(s_cls, t_cls, s_patch, t_patch, masks, c, c2, st, tt, tt2):
    """Zhou et al. Eq. 1-2 / ``iBOTLoss``: returns (L_[CLS], L_MIM).

    L_[CLS]: mean over (teacher global crop q, student crop v != q) of the batch mean of
    H(softmax((t_q - c) / tt), softmax(s_v / st)). L_MIM: mean over global crops of the batch
    mean of each image's masked-patch average of H(softmax((t - c2) / tt2), softmax(s / st)).
    """
    cls_terms = []
    for q, t in enumerate(t_cls):
        p = np.exp(np_log_softmax((t - c) / tt))
        for v, s in enumerate(s_cls):
            if v != q:
                cls_terms.append(np.mean(-np.sum(p * np_log_softmax(s / st), axis=-1)))
    mim = []
    for s, t, m in zip(s_patch, t_patch, masks, strict=True):
        p = np.exp(np_log_softmax((t - c2) / tt2))
        ce = -np.sum(p * np_log_softmax(s / st), axis=-1)
        m = np.asarray(m, np.float64)
        mim.append(np.mean((ce * m).sum(1) / np.maximum(m.sum(1), 1.0)))
    return np.mean(cls_terms), np.mean(mim)


def np_temp(k, warmup=0.04, final=0.07, steps=4):
    return warmup + (final - warmup) * min(k / steps, 1.0)


def test_ibot_trains_with_ema_teacher_and_schedules(ibot_run):
    r = ibot_run
    m = r.method
    assert isinstance(m, IBOT) and m.net.patch_head is None  # shared head
    assert (m.warmup_teacher_temp_steps, m.freeze_last_layer_steps, m.total_steps) == (4, 2, 4)
    assert m.mask_ratio_range == pytest.approx((0.1, 0.5)) and m.mask_prob == 0.5
    harness.assert_trains(r)
    harness.assert_ema(r, lambda p: p)  # the teacher is the EMA of the whole student
    for i, x in enumerate(r.metrics):
        np.testing.assert_allclose(x["teacher_temp"], np_temp(i), rtol=1e-6)
        np.testing.assert_allclose(x["teacher_patch_temp"], np_temp(i), rtol=1e-6)
        assert 0.0 <= x["teacher_entropy"] <= np.log(64) + 1e-5
        np.testing.assert_allclose(x["loss"], x["ibot_cls"] + x["ibot_patch"], rtol=1e-6)


def test_ibot_loss_and_centres_match_numpy(ibot_run):
    r = ibot_run
    m = r.method
    masks_fn = harness.fast_jit(m.masks)
    for i in range(STEPS):
        s, aux = r.states[i], r.states[i].aux
        views = list(harness.step_views(r, i))
        g = views[:2]
        masks = masks_fn(harness.loss_key(r, i), g)
        _, s_cls, s_patch = harness.forward_train(
            m.net, s.params, s.batch_stats, g, masks, views[2:]
        )
        # The teacher sees the global crops unmasked (no token mask, no local crops).
        _, t_cls, t_patch = harness.forward_train(
            m.net, aux["target_params"], aux["target_batch_stats"], g
        )
        c, c2 = np.asarray(aux["center"], np.float64), np.asarray(aux["patch_center"], np.float64)
        t_cls, t_patch = np.asarray(t_cls, np.float64), np.asarray(t_patch, np.float64)
        temp = np_temp(i)
        want_cls, want_mim = np_ibot(
            split_views(np.asarray(s_cls), 4),
            split_views(t_cls, 2),
            split_views(np.asarray(s_patch), 2),
            split_views(t_patch, 2),
            split_views(np.asarray(masks), 2),
            c,
            c2,
            0.1,
            temp,
            temp,
        )
        np.testing.assert_allclose(r.metrics[i]["ibot_cls"], want_cls, rtol=2e-4, atol=1e-5)
        np.testing.assert_allclose(r.metrics[i]["ibot_patch"], want_mim, rtol=2e-4, atol=1e-5)
        np.testing.assert_allclose(r.metrics[i]["mask_ratio"], np.mean(masks), rtol=1e-6)
        # Both centres: c <- 0.9 c + 0.1 (mean teacher output); the patch centre over every
        # patch token of both global crops (iBOTLoss.update_center).
        new = r.states[i + 1].aux
        np.testing.assert_allclose(new["center"], 0.9 * c + 0.1 * t_cls.mean(0), atol=2e-6)
        want_c2 = 0.9 * c2 + 0.1 * t_patch.reshape(-1, t_patch.shape[-1]).mean(0)
        np.testing.assert_allclose(new["patch_center"], want_c2, atol=2e-6)


def test_ibot_masks_global_crops_only_and_per_example(ibot_run):
    m = ibot_run.method
    # An 8 x 8 grid of 8px patches, 2 global crops of 96 images.
    x = jnp.zeros((96, 64, 64, 3))
    masks = np.asarray(jax.jit(m.masks)(jax.random.key(0), [x, x]))
    assert masks.shape == (192, 64) and masks.dtype == bool
    counts = masks.sum(1)
    assert counts.max() <= 0.5 * 64  # ratio <= 0.5, never more than the target
    unmasked = np.mean(counts == 0)
    assert 0.35 < unmasked < 0.65  # each crop of each image masked with probability 0.5
    masked = counts[counts > 0]
    assert masked.min() < 16 < masked.max()  # ratios spread over U(0.1, 0.5)
    assert not np.array_equal(masks[:96], masks[96:])  # the two crops get their own masks
    # pmap: each device draws its rows of the global batch's masks (view-major rows).
    small = jnp.zeros((16, 32, 32, 3))
    full = np.asarray(jax.jit(m.masks)(jax.random.key(1), [small, small]))
    per_dev = jax.pmap(lambda k, a: m.masks(k, [a, a], "i"), axis_name="i", in_axes=(None, 0))(
        jax.random.key(1), small.reshape(8, 2, 32, 32, 3)
    )
    per_dev = np.asarray(per_dev).reshape(8, 2, 2, -1).transpose(1, 0, 2, 3).reshape(32, -1)
    np.testing.assert_array_equal(per_dev, full)


def test_ibot_last_layer_frozen_then_trained(ibot_run):
    r = ibot_run

    def direction(s):
        v = np.asarray(s.params["head"]["last_layer"]["kernel"])
        return v / np.linalg.norm(v, axis=0)

    np.testing.assert_allclose(direction(r.states[1]), direction(r.states[0]), atol=1e-6)
    np.testing.assert_allclose(direction(r.states[2]), direction(r.states[0]), atol=1e-6)
    assert np.abs(direction(r.states[3]) - direction(r.states[2])).max() > 5e-6


def test_ibot_encode_is_the_unmasked_cls_token(ibot_run):
    r = ibot_run
    m, s = r.method, r.states[-1]
    x = harness.step_views(r, 0)[0]
    feats = np.asarray(harness.fast_jit(m.encode)(s.params, s.batch_stats, x))
    h, _, _ = harness.fast_jit(lambda p, a: m.net.apply({"params": p}, [a], None, train=False))(
        s.params, x
    )
    assert feats.shape == (16, 192)
    np.testing.assert_allclose(feats, h, atol=1e-5)


def test_ibot_rejects_bad_arguments(ibot_run):
    m = ibot_run.method
    with pytest.raises(ValueError, match="num_global_crops"):
        dataclasses.replace(m, num_global_crops=1)
    with pytest.raises(ValueError, match="mask_prob"):
        dataclasses.replace(m, mask_prob=1.5)
    with pytest.raises(ValueError, match="mask_ratio_range"):
        dataclasses.replace(m, mask_ratio_range=(0.5, 0.1))
    with pytest.raises(ValueError, match="lambda"):
        dataclasses.replace(m, lambda_patch=-1.0)
    with pytest.raises(ValueError, match="encoder patch"):
        dataclasses.replace(m, patch_size=4)
    with pytest.raises(ValueError, match="use_mask_token"):
        net = m.net.clone(encoder=m.net.encoder.clone(use_mask_token=False))
        dataclasses.replace(m, net=net)
    with pytest.raises(ValueError, match="warmup_steps"):
        dataclasses.replace(m, warmup_teacher_temp_steps=-1)


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet"])
def test_ibot_configs_build(dataset):
    n = 50_000 if dataset == "cifar10" else 1_281_167
    for name in ("", "tiny", "demo"):
        c = load_config(f"ibot_{dataset}.py", name)
        cfg.validate(c, num_devices=8)
        m = build.method(c, n)
        assert isinstance(m, IBOT) and m.net.encoder.use_mask_token
        build.optimizer(c, n)
    c = load_config(f"ibot_{dataset}.py", "")
    c.ibot.shared_head = False
    assert build.method(c, n).net.patch_head.out_dim == c.ibot.patch_out_dim


def test_ibot_imagenet_step_traces_at_full_resolution():
    """Shapes only (``jax.eval_shape``): iBOT's 2 x 224 + 10 x 96 crops on ViT-S/16 with the
    8192-way shared head on every patch token fit the shared step."""
    import optax

    from ssl_jax.train.state import create_train_state
    from ssl_jax.train.step import make_step_fn

    n = 1_281_167
    c = load_config("ibot_imagenet.py", "")
    c.data.batch_size = 8
    m, tx = build.method(c, n), build.optimizer(c, n)
    images = jax.ShapeDtypeStruct((8, 224, 224, 3), jnp.uint8)
    state = jax.eval_shape(
        lambda k, x: create_train_state(m, tx, optax.sgd(0.1), k, x, num_classes=1000),
        jax.random.key(0),
        images,
    )
    step = make_step_fn(m, tx, optax.sgd(0.1), lr_schedule=build.lr_schedule(c, n))
    batch = {"image": images, "label": jax.ShapeDtypeStruct((8,), jnp.int32)}
    new_state, metrics = jax.eval_shape(step, state, batch, jax.random.key(1))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert all(v.shape == () for v in metrics.values())
    assert state.aux["center"].shape == state.aux["patch_center"].shape == (8192,)
