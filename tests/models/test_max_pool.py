"""2x2 max-pool with an elementwise backward: values and gradients equal to ``nn.max_pool``
and to a numpy first-maximum reference, ties included, and the ConvNet uses it."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.models import ConvNet
from ssl_jax.models.max_pool import max_pool_2x2
from tests.models import numpy_ref as ref
from tests.models.common import convnet_train_step


def numpy_pool_grad(x, g):
    """Gradient of 2x2/stride-2 max-pooling: each window's first maximum (row-major) gets g."""
    dx = np.zeros_like(x)
    b, h, w, c = g.shape
    for n, i, j, k in np.ndindex(b, h, w, c):
        window = x[n, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, k].reshape(-1)
        di, dj = divmod(int(np.argmax(window)), 2)  # argmax returns the first maximum
        dx[n, 2 * i + di, 2 * j + dj, k] = g[n, i, j, k]
    return dx


def _inputs(shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    ties = np.round(x * 2) / 2  # many equal entries per window
    return {"distinct": x, "ties": ties, "relu_ties": np.maximum(ties, 0.0)}


def _vjp(pool, x, g):
    y, back = jax.vjp(pool, jnp.asarray(x))
    return y, back(jnp.asarray(g))[0]


def _flax_pool(v):
    return nn.max_pool(v, (2, 2), strides=(2, 2))


@pytest.mark.parametrize("shape", [(2, 4, 4, 3), (3, 5, 7, 2), (1, 2, 2, 1)])
@pytest.mark.parametrize("kind", ["distinct", "ties", "relu_ties"])
@pytest.mark.parametrize("relu", [False, True])
def test_values_and_gradients_match_nn_max_pool_and_numpy(shape, kind, relu):
    x = _inputs(shape)[kind]
    pooled = ref.max_pool(x, 2, 2, 0)
    want = np.maximum(pooled, 0.0) if relu else pooled
    g = np.random.default_rng(1).normal(size=want.shape).astype(np.float32)
    # The ReLU passes the gradient where the pooled value is positive (none at zero).
    want_dx = numpy_pool_grad(x, g * (pooled > 0) if relu else g)

    def pool(v):
        return max_pool_2x2(v, relu=relu)

    def flax_pool(v):
        return jax.nn.relu(_flax_pool(v)) if relu else _flax_pool(v)

    for y, dx in (_vjp(pool, x, g), jax.jit(lambda: _vjp(pool, x, g))(), _vjp(flax_pool, x, g)):
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(dx, want_dx)


@pytest.mark.parametrize("relu", [False, True])
def test_nan_propagates_and_takes_the_gradient_like_numpy(relu):
    """A window with a NaN pools to NaN (as ``nn.max_pool`` and ``jax.nn.relu`` give), and its
    gradient goes to the first NaN (``numpy.argmax``), or nowhere behind the ReLU."""
    x = _inputs((2, 4, 6, 3))["ties"]
    for n, i, j, k in [(0, 0, 1, 0), (0, 2, 2, 1), (0, 3, 3, 1), (1, 1, 0, 2), (1, 3, 5, 0)]:
        x[n, i, j, k] = np.nan
    pooled = ref.max_pool(x, 2, 2, 0)
    assert np.isnan(pooled).sum() == 4  # two NaNs share one window
    g = np.random.default_rng(1).normal(size=pooled.shape).astype(np.float32)
    # NaN > 0 is false: behind the ReLU a NaN window passes no gradient, as jax.nn.relu's.
    want_dx = numpy_pool_grad(x, g * (pooled > 0) if relu else g)
    y, dx = jax.jit(lambda: _vjp(lambda v: max_pool_2x2(v, relu=relu), x, g))()
    want = np.where(pooled > 0, pooled, 0.0) if relu else pooled
    want[np.isnan(pooled)] = np.nan
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(y, jax.nn.relu(_flax_pool(x)) if relu else _flax_pool(x))
    np.testing.assert_array_equal(dx, want_dx)


def test_vmap_matches_per_slice():
    x = jnp.asarray(_inputs((2, 4, 4, 3))["ties"])
    xs = jnp.stack([x, -x])

    def grad(v):
        return jax.grad(lambda u: jnp.sum(max_pool_2x2(u) ** 3))(v)

    np.testing.assert_array_equal(
        jax.vmap(max_pool_2x2)(xs), jnp.stack([max_pool_2x2(x), max_pool_2x2(-x)])
    )
    np.testing.assert_array_equal(jax.vmap(grad)(xs), jnp.stack([grad(x), grad(-x)]))


def test_rejects_bad_shapes():
    for shape in [(4, 4, 3), (2, 1, 4, 3)]:
        with pytest.raises(ValueError, match="max_pool_2x2 expects NHWC"):
            max_pool_2x2(jnp.zeros(shape))


def _train_apply(model, variables, params, x):
    """``(features, updated batch_stats)`` of a training pass with ``params``."""
    return model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])


def test_convnet_pools_without_select_and_scatter():
    model = ConvNet(widths=(4, 8, 16))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)), jnp.float32)
    variables = model.init(jax.random.key(0), x, train=False)

    def loss(params):
        return jnp.sum(_train_apply(model, variables, params, x)[0] ** 2)

    text = jax.jit(jax.grad(loss)).lower(variables["params"]).as_text()
    assert "select_and_scatter" not in text and "reduce_window" not in text


def test_convnet_relu_after_the_pool_is_the_same_function(monkeypatch):
    """The pooled blocks run BN -> max-pool -> ReLU; values, gradients and running
    statistics equal BN -> ReLU -> max-pool's (the ReLU fused into the batch-norm)."""
    from ssl_jax.models import convnet

    def grads():
        step, params, _ = convnet_train_step()
        return step(params)

    (loss, stats), g = grads()
    monkeypatch.setattr(convnet, "_RELU_AFTER_POOL", False)
    (loss_ref, stats_ref), g_ref = grads()
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-6)
    for a, b in zip(jax.tree.leaves((g, stats)), jax.tree.leaves((g_ref, stats_ref)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The comparison has power: dropping the pooled ReLU changes the loss.
    monkeypatch.setattr(convnet, "_RELU_AFTER_POOL", True)
    monkeypatch.setattr(convnet, "max_pool_2x2", lambda v, relu: max_pool_2x2(v))
    assert abs(float(grads()[0][0]) - float(loss_ref)) > 1e-3
