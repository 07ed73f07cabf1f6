"""MaskFeat through the shared step on 8 devices: block masks, HOG targets, masked MSE."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import build
from ssl_jax import config as cfg
from ssl_jax.methods import MaskFeat, MaskFeatNet
from tests.conftest import load_config
from tests.losses import hog_numpy
from tests.methods import harness


@pytest.fixture(scope="module")
def maskfeat_run():
    # tiny: ViT-Ti/8 with 2 blocks on 32px: 16 patches, one 8px HOG cell (27 values) each.
    return harness.run(harness.tiny_config("maskfeat"), num_steps=2)


def test_maskfeat_trains_and_logs_the_masked_hog_loss(maskfeat_run):
    r = maskfeat_run
    m = r.method
    assert isinstance(m, MaskFeat)
    assert (m.patch_size, m.cell_size, m.num_bins, m.target_dim) == (8, 8, 9, 27)
    assert (m.mask_ratio, m.mask_shape, m.norm_cells, m.window) == (0.4, "block", 1, None)
    harness.assert_trains(r)
    masks_fn, encode = harness.fast_jit(m.masks), harness.fast_jit(m.encode)
    for i in range(2):
        s = r.states[i]
        x = harness.step_views(r, i)[0]
        mask = np.asarray(masks_fn(harness.loss_key(r, i), x))
        cls, pred = harness.forward_train(m.net, s.params, s.batch_stats, x, token_mask=mask)
        # Wei et al. Sec. 3: HOG of the whole (unmasked) view, Gaussian window of one patch,
        # per-cell L2 per channel; MSE over the masked patches only.
        target = hog_numpy.maskfeat_targets(np.asarray(x), 8, 8)
        err = (np.asarray(pred, np.float64) - target)[mask]
        np.testing.assert_allclose(r.metrics[i]["maskfeat"], np.mean(err**2), rtol=2e-4)
        np.testing.assert_allclose(r.metrics[i]["mask_ratio"], mask.mean(), rtol=1e-6)
        # Monitors: masked vs unmasked cls token of the first quarter of the batch (4 rows).
        full = encode(s.params, s.batch_stats, x[:4])
        z1, z2 = (np.asarray(z, np.float64) for z in (cls[:4], full))
        z1, z2 = (z / np.linalg.norm(z, axis=1, keepdims=True) for z in (z1, z2))
        want = np.mean(np.sum((z1 - z2) ** 2, axis=1))
        np.testing.assert_allclose(r.metrics[i]["alignment"], want, rtol=1e-4)
        assert want > 0
    # The mask token is a trained parameter.
    token = [np.asarray(s.params["encoder"]["mask_token"]) for s in r.states]
    assert not np.array_equal(token[0], token[-1])


def test_maskfeat_masks_are_per_example_blocks(maskfeat_run):
    m = maskfeat_run.method
    x = jnp.zeros((16, 32, 32, 3))
    mask = np.asarray(jax.jit(m.masks)(jax.random.key(3), x))
    assert mask.shape == (16, 16) and mask.dtype == bool
    assert (mask.sum(1) <= 0.4 * 16).all() and mask.sum(1).mean() > 4
    assert len({row.tobytes() for row in mask}) > 8
    # pmap: each device draws its rows of the global batch's masks.
    sharded = jax.pmap(lambda k, a: m.masks(k, a, "i"), axis_name="i", in_axes=(None, 0))(
        jax.random.key(3), x.reshape(8, 2, 32, 32, 3)
    )
    np.testing.assert_array_equal(np.asarray(sharded).reshape(16, 16), mask)
    # Random masking: exactly N - int(N * 0.6) patches per image.
    rnd = np.asarray(
        jax.jit(dataclasses.replace(m, mask_shape="random").masks)(jax.random.key(3), x)
    )
    np.testing.assert_array_equal(rnd.sum(1), 16 - int(16 * 0.6))


def test_maskfeat_encode_is_the_unmasked_cls_token(maskfeat_run):
    r = maskfeat_run
    m, s = r.method, r.states[-1]
    x = harness.step_views(r, 0)[0]
    feats = np.asarray(harness.fast_jit(m.encode)(s.params, s.batch_stats, x))
    assert feats.shape == (16, 192)
    no_mask = jnp.zeros((16, 16), bool)
    apply = harness.fast_jit(lambda p, a, k: m.net.apply({"params": p}, a, k, train=False))
    cls, _ = apply(s.params, x, no_mask)
    np.testing.assert_allclose(feats, cls, atol=1e-5)


def test_maskfeat_rejects_bad_arguments(maskfeat_run):
    m = maskfeat_run.method
    with pytest.raises(ValueError, match="mask_ratio"):
        dataclasses.replace(m, mask_ratio=0.0)
    with pytest.raises(ValueError, match="mask_shape"):
        dataclasses.replace(m, mask_shape="cube")
    with pytest.raises(ValueError, match="encoder patch"):
        dataclasses.replace(m, patch_size=4)
    with pytest.raises(ValueError, match="cell_size \\* norm_cells"):
        dataclasses.replace(m, cell_size=3)
    with pytest.raises(ValueError, match="HOG size"):
        dataclasses.replace(m, num_bins=8)
    with pytest.raises(ValueError, match="use_mask_token"):
        net = MaskFeatNet(encoder=m.net.encoder.clone(use_mask_token=False), target_dim=27)
        dataclasses.replace(m, net=net)
    with pytest.raises(ValueError, match="multiple of patch"):
        m.masks(jax.random.key(0), jnp.zeros((2, 20, 20, 3)))


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet"])
def test_maskfeat_configs_build(dataset):
    n = 50_000 if dataset == "cifar10" else 1_281_167
    for name in ("", "tiny", "demo"):
        c = load_config(f"maskfeat_{dataset}.py", name)
        cfg.validate(c, num_devices=8)
        m = build.method(c, n)
        assert isinstance(m, MaskFeat) and m.net.encoder.use_mask_token
        build.optimizer(c, n)
    m = build.method(load_config(f"maskfeat_{dataset}.py", ""), n)
    # ImageNet: 2 x 2 cells of 8px per 16px patch (108 values); CIFAR: one 4px cell (27).
    assert m.target_dim == (108 if dataset == "imagenet" else 27)
    c = load_config("maskfeat_cifar10.py")
    c.model.encoder = "resnet18"
    with pytest.raises(ValueError, match="ViT"):
        build.method(c, n)


def test_maskfeat_imagenet_step_traces_at_full_resolution():
    """Shapes only (``jax.eval_shape``): MaskFeat's ViT-B/16 on 224px views with 108-value
    HOG targets per patch fits the shared step."""
    import optax

    from ssl_jax.train.state import create_train_state
    from ssl_jax.train.step import make_step_fn

    n = 1_281_167
    c = load_config("maskfeat_imagenet.py", "")
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
    assert state.params["head"]["kernel"].shape == (768, 108)
