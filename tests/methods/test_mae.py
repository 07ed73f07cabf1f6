"""MAE through the shared step on 8 devices: masks, reconstruction loss, features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.methods import MAE
from tests.methods import harness, numpy_ref


@pytest.fixture(scope="module")
def mae_run():
    # tiny: ViT-Ti/8 on 32px (16 patches, 4 visible), 1-block decoder.
    return harness.run(harness.tiny_config("mae"), num_steps=2)


def test_mae_trains_and_logs_the_masked_reconstruction_loss(mae_run):
    r = mae_run
    m = r.method
    assert isinstance(m, MAE) and (m.patch_size, m.mask_ratio, m.norm_pix_loss) == (8, 0.75, True)
    harness.assert_trains(r)
    for i in range(2):
        s = r.states[i]
        x = harness.step_views(r, i)[0]
        mask_key, _ = jax.random.split(harness.loss_key(r, i))
        keep, mask, restore = m.masks(mask_key, x)
        _, pred = harness.forward_train(
            m.net, s.params, s.batch_stats, x, keep_idx=keep, restore_idx=restore
        )
        target = numpy_ref.patchify(np.asarray(x, np.float64), 8)
        want = numpy_ref.mae(pred, target, np.asarray(mask))
        np.testing.assert_allclose(r.metrics[i]["mae"], want, rtol=2e-4)


def test_mae_masks_are_per_example_and_consistent(mae_run):
    m = mae_run.method
    x = jnp.zeros((16, 32, 32, 3))
    keep, mask, restore = m.masks(jax.random.key(3), x)
    keep, mask, restore = np.asarray(keep), np.asarray(mask), np.asarray(restore)
    assert keep.shape == (16, 4) and mask.shape == (16, 16) and restore.shape == (16, 16)
    np.testing.assert_array_equal(mask.sum(1), 12)  # 75% of 16 patches masked
    for b in range(16):
        np.testing.assert_array_equal(np.sort(np.flatnonzero(mask[b] == 0)), np.sort(keep[b]))
    assert len({tuple(np.sort(k)) for k in keep}) > 8  # different images, different masks
    # pmap: each device draws its rows of the global batch's masks.
    sharded = jax.pmap(lambda k, x: m.masks(k, x, "i"), axis_name="i", in_axes=(None, 0))(
        jax.random.key(3), x.reshape(8, 2, 32, 32, 3)
    )
    for a, b in zip(sharded, (keep, mask, restore), strict=True):
        np.testing.assert_array_equal(np.asarray(a).reshape(b.shape), b)


def test_mae_encode_is_the_cls_token_of_the_unmasked_image(mae_run):
    r = mae_run
    m = r.method
    s = r.states[-1]
    x = harness.step_views(r, 0)[0]
    feats = np.asarray(m.encode(s.params, s.batch_stats, x))
    assert feats.shape == (16, 192)
    every = jnp.broadcast_to(jnp.arange(16), (16, 16))
    cls = m.net.apply({"params": s.params}, x, every, method=type(m.net).visible_features)
    np.testing.assert_allclose(feats, np.asarray(cls), atol=1e-5)
    # Collapse monitors: two independently masked passes differ.
    assert all(x["alignment"] > 0 for x in r.metrics)


def test_mae_rejects_bad_arguments(mae_run):
    import dataclasses

    m = mae_run.method
    with pytest.raises(ValueError, match="mask_ratio"):
        dataclasses.replace(m, mask_ratio=1.0)
    with pytest.raises(ValueError, match="patch"):
        dataclasses.replace(m, patch_size=4)
    with pytest.raises(ValueError, match="multiple of patch"):
        m.masks(jax.random.key(0), jnp.zeros((2, 20, 20, 3)))
