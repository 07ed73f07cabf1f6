"""Shared method pieces: multi-crop forward, view groups, per-example keys, EMA base class."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.methods import SiameseNet
from ssl_jax.methods.base import concat_views
from ssl_jax.methods.common import (
    MomentumTargetMethod,
    apply_train,
    copy_tree,
    init_net,
    l2_normalize,
    multi_crop_forward,
    per_example_keys,
    resolution_groups,
    split_views,
)
from ssl_jax.models import MLP, ConvNet


def test_resolution_groups():
    g, loc = jnp.zeros((2, 8, 8, 3)), jnp.zeros((2, 4, 4, 3))
    assert resolution_groups([g, g, loc, loc, loc]) == [[0, 1], [2, 3, 4]]
    assert resolution_groups([g, loc, g]) == [[0], [1], [2]]
    assert resolution_groups([g]) == [[0]]
    with pytest.raises(ValueError, match="at least one view"):
        resolution_groups([])
    with pytest.raises(ValueError, match="same batch size"):
        resolution_groups([g, jnp.zeros((3, 8, 8, 3))])


def test_split_views_inverts_concat():
    views = [jnp.full((3, 2), v) for v in range(4)]
    for a, b in zip(split_views(concat_views(views), 4), views, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="equal views"):
        split_views(jnp.zeros((5, 2)), 2)


def test_multi_crop_forward_is_backbone_per_size_then_heads_on_all_crops():
    net = SiameseNet(ConvNet(widths=(4, 8)), MLP([8], 5), MLP([6], 3))
    k = jax.random.split(jax.random.key(0), 5)
    views = [jax.random.normal(k[i], (4, 8, 8, 3)) for i in range(2)]
    views += [jax.random.normal(k[i + 2], (4, 4, 4, 3)) for i in range(3)]
    params, stats = init_net(net, k[4], views[0])
    (h, z, p), new_stats = apply_train(
        net, params, stats, views, method=multi_crop_forward, train=True
    )
    # By hand: the backbone on each size group (BN statistics per group, running averages
    # updated once per group), then both heads once on all the features.
    enc_stats = stats["encoder"]
    hs = []
    for group in (views[:2], views[2:]):
        out, upd = net.encoder.apply(
            {"params": params["encoder"], "batch_stats": enc_stats},
            concat_views(group),
            train=True,
            mutable=["batch_stats"],
        )
        hs.append(out)
        enc_stats = upd["batch_stats"]
    want_h = jnp.concatenate(hs)
    want_z, proj_upd = net.projector.apply(
        {"params": params["projector"], "batch_stats": stats["projector"]},
        want_h,
        train=True,
        mutable=["batch_stats"],
    )
    np.testing.assert_allclose(h, want_h, atol=1e-6)
    np.testing.assert_allclose(z, want_z, atol=1e-5)
    assert p.shape == (20, 3)
    for a, b in zip(jax.tree.leaves(new_stats["encoder"]), jax.tree.leaves(enc_stats), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for a, b in zip(
        jax.tree.leaves(new_stats["projector"]),
        jax.tree.leaves(proj_upd["batch_stats"]),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_per_example_keys_agree_between_global_batch_and_pmap():
    rng = jax.random.key(7)
    want = jax.random.key_data(per_example_keys(rng, 16, None))
    np.testing.assert_array_equal(want, jax.random.key_data(jax.random.split(rng, 16)))
    got = jax.pmap(
        lambda x: jax.random.key_data(per_example_keys(rng, x.shape[0], "i")), axis_name="i"
    )(jnp.zeros((8, 2)))
    np.testing.assert_array_equal(np.asarray(got).reshape(want.shape), want)


@pytest.mark.parametrize("shape", [(5, 3), (2, 7, 16)])
def test_l2_normalize_values_and_gradients_match_numpy(shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    w = np.random.default_rng(1).normal(size=shape)
    u = x / np.linalg.norm(x, axis=-1, keepdims=True)
    np.testing.assert_allclose(l2_normalize(jnp.asarray(x)), u, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.jit(l2_normalize)(jnp.asarray(x)), u, rtol=1e-6, atol=1e-6)
    # d/dx sum(w * x / |x|) = (w - (w . u) u) / |x|
    want = (w - np.sum(w * u, -1, keepdims=True) * u) / np.linalg.norm(x, axis=-1, keepdims=True)
    got = jax.grad(lambda x: jnp.sum(jnp.asarray(w, jnp.float32) * l2_normalize(x)))(jnp.asarray(x))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    zero = l2_normalize(jnp.zeros((2, 3)))
    assert np.all(np.isfinite(zero)) and np.all(zero == 0)


def test_copy_tree_gives_fresh_buffers():
    tree = {"a": jnp.arange(3.0), "b": {"c": jnp.ones(2)}}
    copied = copy_tree(tree)
    for x, y in zip(jax.tree.leaves(tree), jax.tree.leaves(copied), strict=True):
        np.testing.assert_array_equal(x, y)
        assert x.unsafe_buffer_pointer() != y.unsafe_buffer_pointer()


class _Target(MomentumTargetMethod):
    """Only the EMA machinery is exercised: no network is ever applied (net=None)."""

    def loss(self, *args, **kwargs):
        raise NotImplementedError


def test_momentum_target_base_class():
    def view_fn(key, x):
        return [x]

    m = _Target(net=None, view_fn=view_fn, total_steps=10, ema_base=0.99, ema_final=0.99)
    assert [float(m.momentum(k)) for k in (0, 5, 10, 20)] == pytest.approx([0.99] * 4)
    m = _Target(net=None, view_fn=view_fn, total_steps=10)
    np.testing.assert_allclose(float(m.momentum(5)), 1 - 0.004 / 2, rtol=1e-6)
    params = {"encoder": {"w": jnp.ones(2)}, "predictor": {"w": jnp.zeros(2)}}
    aux = m.init_target(params, {})
    assert set(aux["target_params"]) == {"encoder"}
    new_params = {"encoder": {"w": jnp.full(2, 3.0)}, "predictor": {"w": jnp.zeros(2)}}
    _, new_aux = m.after_update(new_params, aux, jnp.asarray(1))
    tau = 0.996  # momentum of step 0, the step just taken
    np.testing.assert_allclose(new_aux["target_params"]["encoder"]["w"], tau + (1 - tau) * 3.0)
    with pytest.raises(ValueError, match="total_steps"):
        _Target(net=None, view_fn=view_fn, total_steps=0)
    with pytest.raises(ValueError, match="final"):
        _Target(net=None, view_fn=view_fn, total_steps=3, ema_final=2.0)
