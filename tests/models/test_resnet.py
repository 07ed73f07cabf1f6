"""ResNet and ConvNet: published parameter counts, stems, numerics vs numpy, BN behaviour."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssl_jax.models import ConvNet, ResNet, resnet18, resnet34, resnet50
from tests.models import numpy_ref as ref
from tests.models.common import count_params, randomize


def resnet_param_count(stage_sizes, bottleneck, width=1, stem="imagenet"):
    """Hand count from the architecture: conv weights (no bias) + BN gamma/beta."""
    w0 = 64 * width
    total = (49 if stem == "imagenet" else 9) * 3 * w0 + 2 * w0
    cin = w0
    for i, n in enumerate(stage_sizes):
        f = w0 * 2**i
        out = 4 * f if bottleneck else f
        for j in range(n):
            if bottleneck:
                total += cin * f + 2 * f + 9 * f * f + 2 * f + f * out + 2 * out
            else:
                total += 9 * cin * f + 2 * f + 9 * f * f + 2 * f
            if cin != out or (i > 0 and j == 0):
                total += cin * out + 2 * out
            cin = out
    return total


# torchvision resnet{18,34,50}: 11,689,512 / 21,797,672 / 25,557,032 parameters including the
# 1000-way fc (512*1000+1000 or 2048*1000+1000); BN running stats are buffers, not parameters.
@pytest.mark.parametrize(
    "ctor, stages, bottleneck, published",
    [
        (resnet18, (2, 2, 2, 2), False, 11_689_512 - 513_000),
        (resnet34, (3, 4, 6, 3), False, 21_797_672 - 513_000),
        (resnet50, (3, 4, 6, 3), True, 25_557_032 - 2_049_000),
    ],
)
def test_param_counts_match_torchvision(ctor, stages, bottleneck, published):
    model = ctor()
    assert count_params(model, (1, 224, 224, 3)) == published
    assert resnet_param_count(stages, bottleneck) == published
    out = jax.eval_shape(
        lambda: model.init_with_output(jax.random.key(0), jnp.zeros((2, 224, 224, 3)), train=False)
    )[0]
    assert out.shape == (2, model.num_features)
    assert model.num_features == (2048 if bottleneck else 512)


def test_width_multiplier_and_cifar_stem_counts():
    wide = resnet50(width_multiplier=2)
    assert wide.num_features == 4096
    assert count_params(wide, (1, 64, 64, 3)) == resnet_param_count((3, 4, 6, 3), True, width=2)
    cifar = resnet18(stem="cifar")
    # The CIFAR stem swaps the 7x7x3x64 conv for a 3x3x3x64 one: 11,176,512 - 40*3*64.
    assert count_params(cifar, (1, 32, 32, 3)) == 11_176_512 - 40 * 3 * 64


@pytest.mark.parametrize(
    "stem, size, stage1, stage4", [("imagenet", 224, 56, 7), ("cifar", 32, 32, 4)]
)
def test_stem_spatial_behaviour(stem, size, stage1, stage4):
    model = resnet18(stem=stem)

    def run():
        x = jnp.zeros((2, size, size, 3))
        variables = model.init(jax.random.key(0), x, train=False)
        return model.apply(
            variables,
            x,
            train=False,
            capture_intermediates=lambda mdl, _: mdl.name in ("stage1_block2", "stage4_block2"),
        )

    _, state = jax.eval_shape(run)
    inter = state["intermediates"]
    assert inter["stage1_block2"]["__call__"][0].shape == (2, stage1, stage1, 64)
    assert inter["stage4_block2"]["__call__"][0].shape == (2, stage4, stage4, 512)


TINY = {"stage_sizes": (1, 1)}
TINY_REF = {**TINY, "bottleneck": False, "stem": "cifar"}


@pytest.mark.parametrize(
    "block, stem, size",
    [("basic", "cifar", 8), ("bottleneck", "cifar", 6), ("basic", "imagenet", 24)],
)
@pytest.mark.parametrize("train", [False, True])
def test_resnet_matches_numpy(block, stem, size, train):
    model = ResNet(**TINY, block=block, stem=stem, bn_momentum=0.8)
    x = np.random.default_rng(0).normal(size=(3, size, size, 3)).astype(np.float32)
    variables = randomize(model.init(jax.random.key(0), x, train=False), seed=1)
    out, new_vars = model.apply(variables, x, train=train, mutable=["batch_stats"])
    want, want_stats = ref.resnet(
        ref.f64(variables["params"]),
        ref.f64(variables["batch_stats"]),
        x.astype(np.float64),
        stage_sizes=TINY["stage_sizes"],
        bottleneck=block == "bottleneck",
        stem=stem,
        train=train,
        momentum=0.8,
    )
    np.testing.assert_allclose(out, want, rtol=2e-4, atol=2e-4)
    got_stats = ref.f64(flax.core.unfreeze(new_vars["batch_stats"]))
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5), got_stats, want_stats
    )


@pytest.mark.parametrize("zero_init", [True, False])
def test_zero_init_residual(zero_init):
    for block, last in (("basic", "bn2"), ("bottleneck", "bn3")):
        model = ResNet(stage_sizes=(1,), block=block, stem="cifar", zero_init_residual=zero_init)
        params = model.init(jax.random.key(0), jnp.ones((1, 4, 4, 3)), train=False)["params"]
        gamma = params["stage1_block1"][last]["scale"]
        np.testing.assert_array_equal(gamma, 0.0 if zero_init else 1.0)
        np.testing.assert_array_equal(params["stage1_block1"]["bn1"]["scale"], 1.0)


def test_batch_stats_update_only_in_train_mode():
    model = ResNet(stage_sizes=(1,), stem="cifar")
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3)) * 2.0 + 1.0
    variables = model.init(jax.random.key(0), x, train=False)
    stats0 = variables["batch_stats"]
    _, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), stats0, updated["batch_stats"])
    assert all(jax.tree.leaves(changed))
    # Eval mode needs no mutable collection and leaves the statistics untouched.
    out_eval, same = model.apply(variables, x, train=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, stats0, same["batch_stats"])
    # Eval features of an image do not depend on the rest of the batch; train ones do.
    np.testing.assert_allclose(
        model.apply(variables, x[:1], train=False), out_eval[:1], rtol=1e-5, atol=1e-6
    )
    train_full, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    train_one, _ = model.apply(variables, x[:2], train=True, mutable=["batch_stats"])
    assert not np.allclose(train_full[:2], train_one)


@pytest.mark.parametrize("module", [ResNet(stage_sizes=(1,), stem="cifar"), ConvNet((4, 8))])
def test_bf16_compute_keeps_float32_params(module):
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    variables = module.init(jax.random.key(0), x, train=False)
    bf16 = module.clone(dtype=jnp.bfloat16)
    out, new = bf16.apply(variables, x, train=True, mutable=["batch_stats"])
    assert out.dtype == jnp.bfloat16
    for leaf in jax.tree.leaves(bf16.init(jax.random.key(0), x, train=False)):
        assert leaf.dtype == jnp.float32
    for leaf in jax.tree.leaves(new):
        assert leaf.dtype == jnp.float32
    ref32, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(out.astype(np.float32), ref32, rtol=0.05, atol=0.05)


def test_convnet_matches_numpy_and_counts():
    model = ConvNet(widths=(4, 8, 16))
    assert model.num_features == 16
    x = np.random.default_rng(2).normal(size=(3, 8, 8, 3)).astype(np.float32)
    variables = randomize(model.init(jax.random.key(0), x, train=False), seed=3)
    for train in (False, True):
        out, _ = model.apply(variables, x, train=train, mutable=["batch_stats"])
        want, _ = ref.convnet(
            ref.f64(variables["params"]),
            ref.f64(variables["batch_stats"]),
            x.astype(np.float64),
            n_blocks=3,
            train=train,
        )
        np.testing.assert_allclose(out, want, rtol=2e-4, atol=2e-4)
    widths = (32, 64, 128, 256)
    expected = sum(9 * a * b + 2 * b for a, b in zip((3, *widths[:-1]), widths, strict=True))
    assert count_params(ConvNet(), (1, 32, 32, 3)) == expected == 388_896
    with pytest.raises(ValueError, match="at least 8x8"):
        ConvNet().init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)), train=False)


@pytest.mark.parametrize(
    "model, ref_fn, map_shape",
    [
        (
            ResNet(**TINY, stem="cifar"),
            lambda *a, **k: ref.resnet(*a, **k, **TINY_REF),
            (3, 8, 8, 128),
        ),
        (
            ConvNet(widths=(4, 8, 16)),
            lambda *a, **k: ref.convnet(*a, **k, n_blocks=3),
            (3, 4, 4, 16),
        ),
    ],
)
@pytest.mark.parametrize("train", [False, True])
def test_return_map_gives_the_last_feature_map_and_its_mean(model, ref_fn, map_shape, train):
    """``return_map=True``: the unpooled last map (numpy), and the same pooled features and
    BN updates as without it."""
    x = np.random.default_rng(4).normal(size=(3, 16, 16, 3)).astype(np.float32)
    variables = randomize(model.init(jax.random.key(0), x, train=False), seed=5)
    (pooled, fmap), stats = model.apply(
        variables, x, train=train, return_map=True, mutable=["batch_stats"]
    )
    plain, plain_stats = model.apply(variables, x, train=train, mutable=["batch_stats"])
    want, _ = ref_fn(
        ref.f64(variables["params"]),
        ref.f64(variables["batch_stats"]),
        x.astype(np.float64),
        train=train,
        pool=False,
    )
    assert fmap.shape == want.shape == map_shape
    np.testing.assert_allclose(fmap, want, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(pooled, want.mean((1, 2)), rtol=2e-4, atol=2e-4)
    np.testing.assert_array_equal(pooled, plain)
    jax.tree.map(np.testing.assert_array_equal, stats, plain_stats)


def test_bad_configurations_raise():
    x = jnp.zeros((1, 8, 8, 3))
    with pytest.raises(ValueError, match="block"):
        ResNet(stage_sizes=(1,), block="wide").init(jax.random.key(0), x, train=False)
    with pytest.raises(ValueError, match="stem"):
        ResNet(stage_sizes=(1,), stem="tiny").init(jax.random.key(0), x, train=False)
    with pytest.raises(ValueError, match="NHWC"):
        ResNet(stage_sizes=(1,)).init(jax.random.key(0), jnp.zeros((8, 8, 3)), train=False)


def test_pmap_bn_axis_name_equals_global_batch_norm(n_devices):
    """Per-device BN with ``bn_axis_name`` under pmap == BN over the whole batch."""
    model = ResNet(stage_sizes=(1,), stem="cifar")
    x = jax.random.normal(jax.random.key(1), (2 * n_devices, 6, 6, 3))
    variables = randomize(model.init(jax.random.key(0), x, train=False), seed=4)
    want, want_vars = model.apply(variables, x, train=True, mutable=["batch_stats"])

    mapped = model.clone(bn_axis_name="batch")
    step = jax.pmap(
        lambda v, xb: mapped.apply(v, xb, train=True, mutable=["batch_stats"]),
        axis_name="batch",
        in_axes=(None, 0),
    )
    got, got_vars = step(variables, x.reshape(n_devices, 2, *x.shape[1:]))
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4)
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g[0], w, rtol=1e-4, atol=1e-5),
        got_vars["batch_stats"],
        want_vars["batch_stats"],
    )


def test_jit_over_sharded_mesh_equals_single_device(n_devices):
    """Under jit with the batch sharded over 8 devices, plain BN is already global."""
    model = ConvNet(widths=(4, 8))
    x = jax.random.normal(jax.random.key(1), (2 * n_devices, 4, 4, 3))
    variables = model.init(jax.random.key(0), x, train=False)
    want, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])  # eager
    mesh = Mesh(np.array(jax.devices()), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
    fn = jax.jit(lambda v, xb: model.apply(v, xb, train=True, mutable=["batch_stats"]))
    got, _ = fn(variables, xs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
