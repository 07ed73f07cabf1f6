"""``ssl_jax.models.batch_norm.BatchNorm`` against Flax's ``nn.BatchNorm`` (+ ``nn.relu``):
values, running statistics and gradients (float64), under ``pmap`` with a batch axis, in
evaluation mode, in bfloat16, and the variables (checkpoints load either way)."""

import functools
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.models.batch_norm import BatchNorm


class Norm(nn.Module):
    """A BN (+ residual + ReLU) layer named ``bn``: ours (``fused``) or Flax's
    ``nn.BatchNorm``, then the residual's addition and ``nn.relu``, with the same settings."""

    fused: bool
    relu: bool
    use_running_average: bool = False
    axis_name: str | None = None
    dtype: object = None

    @nn.compact
    def __call__(self, x, residual=None):
        kw = dict(
            use_running_average=self.use_running_average,
            momentum=0.9,
            epsilon=1e-5,
            axis_name=self.axis_name,
            dtype=self.dtype,
            name="bn",
        )
        if self.fused:
            return BatchNorm(relu=self.relu, **kw)(x, residual=residual)
        y = nn.BatchNorm(**kw)(x)
        y = y if residual is None else y + residual
        return nn.relu(y) if self.relu else y


OurBN = functools.partial(Norm, True)
FlaxBN = functools.partial(Norm, False)


def _variables(c, seed=0):
    """Random scale, bias and running statistics (float32, as both modules keep them)."""
    r = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
    return {
        "params": {"bn": {"scale": 1 + 0.5 * f(c), "bias": f(c)}},
        "batch_stats": {"bn": {"mean": f(c), "var": jnp.exp(f(c))}},
    }


def _train(module, variables, x, w, *residual):
    """Output, updated statistics and gradients of ``sum(out * w)`` (params, x[, residual])."""

    def loss(params, x, *residual):
        out, upd = module.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            *residual,
            mutable=["batch_stats"],
        )
        return jnp.sum(out * w), (out, upd["batch_stats"])

    argnums = tuple(range(2 + len(residual)))
    (_, (out, stats)), grads = jax.value_and_grad(loss, argnums=argnums, has_aux=True)(
        variables["params"], x, *residual
    )
    return out, stats, grads


@pytest.mark.parametrize("relu", [True, False])
def test_training_values_statistics_and_gradients_equal_flax(relu):
    with jax.enable_x64(True):
        r = np.random.default_rng(1)
        # Off-centre inputs: the backward pass must not lose the mean's cancellation.
        x = jnp.asarray(3 + 2 * r.normal(size=(6, 5, 4, 7)))
        w = jnp.asarray(r.normal(size=x.shape))
        v = _variables(7)
        ours = _train(OurBN(relu), v, x, w)
        ref = _train(FlaxBN(relu), v, x, w)
        relu_share = float(jnp.mean(ours[0] == 0))
    (out, stats, (gp, gx)), (out_r, stats_r, (gp_r, gx_r)) = ours, ref
    assert out.dtype == jnp.float64 and gx.dtype == jnp.float64
    np.testing.assert_allclose(out, out_r, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, gx_r, rtol=1e-10, atol=1e-12)
    for a, b in zip(jax.tree.leaves((stats, gp)), jax.tree.leaves((stats_r, gp_r)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)  # float32 leaves
    if relu:
        assert relu_share > 0.2  # the ReLU is active on a good share


@pytest.mark.parametrize("relu", [True, False])
def test_evaluation_uses_the_running_statistics_like_flax(relu):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3, 3, 5)), jnp.float32)
    v = _variables(5, seed=3)
    ours = OurBN(relu, use_running_average=True).apply(v, x)
    ref = FlaxBN(relu, use_running_average=True).apply(v, x)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_pmap_averages_statistics_and_gradients_over_the_axis_like_flax():
    n = jax.local_device_count()
    assert n == 8, "tests/conftest.py sets 8 CPU devices"
    r = np.random.default_rng(4)
    x = jnp.asarray(1 + r.normal(size=(n, 3, 4, 4, 6)), jnp.float32)
    w = jnp.asarray(r.normal(size=x.shape), jnp.float32)
    v = _variables(6, seed=5)
    outs = {}
    for name, cls in (("ours", OurBN), ("flax", FlaxBN)):
        step = jax.pmap(
            lambda x, w, cls=cls: _train(cls(True, axis_name="b"), v, x, w), axis_name="b"
        )
        outs[name] = step(x, w)
    for a, b in zip(jax.tree.leaves(outs["ours"]), jax.tree.leaves(outs["flax"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
    # The statistics are global: every device holds the same running mean.
    mean = outs["ours"][1]["bn"]["mean"]
    np.testing.assert_allclose(mean, jnp.broadcast_to(mean[0], mean.shape), rtol=1e-6)


def test_vmap_over_independent_batches_matches_flax():
    r = np.random.default_rng(10)
    x = jnp.asarray(r.normal(size=(3, 4, 2, 2, 5)), jnp.float32)  # 3 batches of 4
    w = jnp.asarray(r.normal(size=x.shape), jnp.float32)
    v = _variables(5, seed=11)
    ours = jax.vmap(lambda x, w: _train(OurBN(True), v, x, w))(x, w)
    ref = jax.vmap(lambda x, w: _train(FlaxBN(True), v, x, w))(x, w)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_bfloat16_output_stays_close_to_flax():
    x = jnp.asarray(np.random.default_rng(6).normal(size=(8, 4, 4, 16)), jnp.bfloat16)
    w = jnp.ones(x.shape, jnp.bfloat16)
    v = _variables(16, seed=7)
    out, _, (_, gx) = _train(OurBN(True, dtype=jnp.bfloat16), v, x, w)
    out_r, _, (_, gx_r) = _train(FlaxBN(True, dtype=jnp.bfloat16), v, x, w)
    assert out.dtype == jnp.bfloat16 and gx.dtype == jnp.bfloat16
    np.testing.assert_allclose(out.astype(np.float32), out_r.astype(np.float32), atol=0.05)
    np.testing.assert_allclose(gx.astype(np.float32), gx_r.astype(np.float32), atol=0.05)


def test_residual_is_added_before_the_relu_with_its_gradient():
    with jax.enable_x64(True):
        r = np.random.default_rng(8)
        x = jnp.asarray(2 + r.normal(size=(5, 4, 3, 6)))
        s = jnp.asarray(r.normal(size=x.shape))
        w = jnp.asarray(r.normal(size=x.shape))
        v = _variables(6, seed=9)
        results = {}
        for name, cls in (("ours", OurBN), ("flax", FlaxBN)):
            evaluate = cls(True, use_running_average=True).apply
            results[name] = (*_train(cls(True), v, x, w, s), evaluate(v, x, s))
    ours, ref = jax.tree.leaves(results["ours"]), jax.tree.leaves(results["flax"])
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    (_, gx, gs), (_, gx_r, gs_r) = results["ours"][2], results["flax"][2]
    np.testing.assert_allclose(gx, gx_r, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gs, gs_r, rtol=1e-12, atol=1e-12)


def test_residual_of_another_shape_is_an_error():
    x = jnp.ones((2, 3, 3, 4))
    with pytest.raises(ValueError, match=r"residual shape \(2, 3, 3, 5\) differs"):
        OurBN(True).init(jax.random.key(0), x, jnp.ones((2, 3, 3, 5)))


def test_variables_are_flax_batchnorms():
    x = jnp.ones((2, 3, 3, 4))
    ours = OurBN(True).init(jax.random.key(0), x)
    ref = FlaxBN(True).init(jax.random.key(0), x)
    shapes = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)
    assert shapes(ours) == shapes(ref)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(a, b)


def test_non_finite_bias_gives_flax_values():
    """The ReLU's floor is computed from the bias (``_channel_zero``): a NaN or infinite
    bias still gives Flax's values, channel by channel."""
    x = jnp.asarray(np.random.default_rng(4).normal(size=(4, 3, 3, 4)), jnp.float32)
    v = _variables(4, seed=5)
    v["params"]["bn"]["bias"] = jnp.asarray([np.nan, np.inf, -np.inf, 0.5], jnp.float32)
    for train in (True, False):
        ours = OurBN(True, use_running_average=not train).apply(v, x, mutable=["batch_stats"])
        ref = FlaxBN(True, use_running_average=not train).apply(v, x, mutable=["batch_stats"])
        np.testing.assert_array_equal(ours[0], ref[0])
        assert np.isnan(ours[0][..., 0]).all() and (ours[0][..., 1] == np.inf).all()
        assert (ours[0][..., 2] == 0).all()


class _TwoLayers(nn.Module):
    @nn.compact
    def __call__(self, x):
        for i in range(2):
            x = BatchNorm(use_running_average=False, relu=True, name=f"bn{i}")(x)
        return x


def test_same_shape_layers_write_no_full_size_constant():
    """Under the train step's XLA:CPU options, the training pass of two same-shape BN-ReLU
    layers writes no full-size broadcast: a shared constant (the ReLU's 0, the count ``n``)
    would be written out for the YNNPACK fusions that read it."""
    from ssl_jax.models import batch_norm
    from ssl_jax.train import xla_cpu

    x = jnp.asarray(np.random.default_rng(6).normal(size=(8, 6, 6, 16)), jnp.float32)
    model = _TwoLayers()
    v = model.init(jax.random.key(0), x)

    def loss(params, x):
        out, _ = model.apply({**v, "params": params}, x, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(out))

    def full_size_broadcasts():
        # A new function each time: jit's trace cache would keep the first trace.
        lowered = jax.jit(lambda p, x: jax.grad(loss, argnums=(0, 1))(p, x)).lower(v["params"], x)
        text = lowered.compile(compiler_options=xla_cpu.CPU_STEP_OPTIONS).as_text()
        return text.count("f32[8,6,6,16]{3,2,1,0} fusion(%constant")

    assert full_size_broadcasts() == 0
    # The check has power: constant zeros bring the shared broadcasts back.
    with mock.patch.object(batch_norm, "_channel_zero", lambda v: 0):
        assert full_size_broadcasts() > 0


@pytest.mark.parametrize("relu", [True, False])
def test_training_pass_without_autodiff_equals_flax_and_the_autodiff_pass(relu):
    """Without autodiff (a target network's forward pass) the training pass takes its
    primal body, whose ReLU is the select: same values and statistics as Flax and as the
    pass under autodiff."""
    with jax.enable_x64(True):
        r = np.random.default_rng(7)
        x = jnp.asarray(3 + 2 * r.normal(size=(6, 5, 4, 7)))
        v = _variables(7, seed=8)
        ours, ours_stats = OurBN(relu).apply(v, x, mutable=["batch_stats"])
        ref, ref_stats = FlaxBN(relu).apply(v, x, mutable=["batch_stats"])
        under_grad = _train(OurBN(relu), v, x, jnp.ones_like(x))
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ours, under_grad[0])
    for a, b in zip(jax.tree.leaves(ours_stats), jax.tree.leaves(ref_stats), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    if relu:
        assert 0.1 < float(jnp.mean(ours == 0)) < 0.9  # the ReLU zeroes a good share


class _NormThenConv(nn.Module):
    """A BN-ReLU layer whose output only a 3x3 convolution reads (a residual block's
    ``bn1`` and ``conv2``)."""

    use_running_average: bool

    @nn.compact
    def __call__(self, x):
        x = BatchNorm(use_running_average=self.use_running_average, relu=True)(x)
        return nn.Conv(32, (3, 3), use_bias=False)(x)


@pytest.mark.parametrize("use_running_average", [False, True])
def test_passes_without_autodiff_keep_the_convolution_out_of_ynnpack(use_running_average):
    """Under the train step's XLA:CPU options, a forward pass without autodiff (training
    mode: a momentum target; evaluation mode) leaves the convolution after a BN-ReLU to
    Eigen: no YNNPACK fusion takes it in with the ReLU as its prologue."""
    from experiments.bench import baselines
    from ssl_jax.train import xla_cpu
    from tests.models.common import ynn_fusion_bodies

    # Large enough for YNNPACK to fuse at all (4 x 8 x 8 x 32; it leaves 2 x 8 x 8 x 16 alone).
    x = jnp.asarray(np.random.default_rng(9).normal(size=(4, 8, 8, 32)), jnp.float32)
    model = _NormThenConv(use_running_average)
    v = model.init(jax.random.key(0), x)

    def ynn_convolutions():
        # A new function each time: jit's trace cache would keep the first trace.
        fn = jax.jit(lambda v, x: model.apply(v, x, mutable=["batch_stats"])[0])
        text = fn.lower(v, x).compile(compiler_options=xla_cpu.CPU_STEP_OPTIONS).as_text()
        return sum(body.count(" convolution(") for body in ynn_fusion_bodies(text))

    assert ynn_convolutions() == 0
    # The check has power: the benchmark's "before" (a max ReLU) gives it to YNNPACK.
    with baselines.maximum_relu_without_autodiff():
        assert ynn_convolutions() == 1
