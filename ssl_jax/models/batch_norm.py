"""BatchNorm over the channel axis with an optional fused ReLU and a hand-written backward.

Flax's ``nn.BatchNorm`` followed by ``nn.relu`` computes what this module computes, with
the same parameters, statistics, collections and names, so checkpoints load either way.
The difference is what XLA:CPU makes of it. With the element-wise YNNPACK fusions that
``ssl_jax.train.xla_cpu`` keeps, autodiff's batch-norm splits into one-operation fusions:
``x - mean``, ``* scale/std + bias`` and ``max(., 0)`` each write a full activation. On top
of that, the per-channel factor and the ReLU's zeros are written out at full size, because
one broadcast feeds several fusions (forward and backward) and none of them takes it in.
A constant (the ReLU's 0, the backward's count ``n``) is one broadcast per activation shape
for every layer of that shape, after XLA's CSE; so the ReLU's floor and the count are
per-channel vectors computed from the layer's own parameters and statistics
(:func:`_channel_zero`), which each fusion takes in.
Here the training forward pass is one element-wise pass after the statistics,
``max((x - mean) * a + bias [+ residual], 0)`` with ``a = scale / std`` (a residual block's
shortcut can be added before the ReLU). The backward pass is one pass plus two per-channel
sums, the textbook batch-norm gradient::

    dx = a * (g - mean(g) - xhat * mean(g * xhat)),   xhat = (x - mean) / std

with ``g`` the output cotangent, masked by the ReLU. Measurements are in
``experiments/bench/README.md`` (the ``batch_norm`` before/after).

Statistics are computed in float32 (at least), as Flax does: mean and ``E[x^2] - mean^2``
clipped at 0, averaged over ``axis_name`` (``pmap``) if given. The running averages take
them without gradient.

In evaluation mode, and in the training pass without autodiff (a momentum target
network's forward pass), the ReLU is a select, ``where(y < 0, 0, y)``, equal to
``max(y, 0)`` for every ``y``, NaN included. There the activation's only consumer is often
the next convolution, and YNNPACK's element-wise fusion would take a ``max`` in as that
convolution's prologue and run the convolution itself: BatchNorm, ReLU and a 3x3
convolution of the CIFAR ResNet's maps took 1.15-1.8x the time of the same with Eigen's
convolution (batch 128; ``experiments/bench/README.md``, change 15). A select is not a
YNNPACK operation, so the activation stays an XLA fusion's output and the convolution
Eigen's. In the training pass under autodiff the activation is saved for the backward
pass anyway, nothing is fused into the convolution, and the ``max`` (YNNPACK's, faster
than XLA's own loop) stays.

The training pass is a ``jax.custom_vjp``: reverse-mode (``grad``, ``vjp``) and ``vmap``
work through it, forward-mode (``jvp``, ``jacfwd``) does not. Evaluation mode
(``use_running_average``) is plain ``jax.numpy`` and supports both.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def _stats(x: jax.Array, axis_name: str | None) -> tuple[jax.Array, jax.Array]:
    axes = tuple(range(x.ndim - 1))
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean, mean2 = jnp.mean(x, axes), jnp.mean(jnp.square(x), axes)
    if axis_name is not None:
        mean, mean2 = lax.pmean(jnp.stack([mean, mean2]), axis_name)
    return mean, jnp.maximum(0.0, mean2 - jnp.square(mean))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _train_norm(x, scale, bias, residual, epsilon, relu, axis_name, dtype):
    """``(y, mean, var)``: the normalised batch (plus ``residual`` unless None, then the
    ReLU if ``relu``) and the batch statistics (see module). JAX calls this body only
    without autodiff (``_train_fwd`` under it), so its ReLU is the select."""
    args = (x, scale, bias, residual, epsilon, relu, axis_name, dtype)
    return _train_fwd(*args, relu_fn=_select_relu)[0]


def _channel_zero(v):
    """``min(|v|, 0)``: zeros shaped like the per-channel vector ``v`` and computed from it,
    exactly 0 wherever ``v`` is not NaN (a NaN ``v`` makes the layer's values NaN anyway).
    Unlike a constant 0, it is not shared among layers (see module)."""
    return jnp.minimum(jnp.abs(v), 0)


def _select_relu(y, floor):
    """``max(y, floor)`` as a select: ``y`` where it is not below ``floor`` (NaN too)."""
    return jnp.where(y < floor, floor, y)


def _normalize(x, mean, inv, scale, bias, residual, relu, dtype, relu_fn=jnp.maximum):
    """``(x - mean) * inv * scale + bias`` (``+ residual``, then the ReLU ``relu_fn(y, 0)``)
    in ``dtype``; ``inv`` is ``1 / std``."""
    y = (x - mean) * (inv * scale) + bias
    if residual is not None:
        y = y + residual
    return (relu_fn(y, _channel_zero(bias)) if relu else y).astype(dtype)


def _train_fwd(x, scale, bias, residual, epsilon, relu, axis_name, dtype, relu_fn=jnp.maximum):
    mean, var = _stats(x, axis_name)
    inv = lax.rsqrt(var + epsilon)
    y = _normalize(x, mean, inv, scale, bias, residual, relu, dtype, relu_fn)
    # A zero-size stand-in records the residual's dtype (None: no residual, a static fact).
    marker = None if residual is None else jnp.zeros((0,), residual.dtype)
    return (y, mean, var), (x, y if relu else None, mean, inv, scale, marker)


def _train_bwd(epsilon, relu, axis_name, dtype, res, cotangents):
    # The statistics' cotangents are dropped: the module uses them only under
    # stop_gradient (running averages), so they are zero.
    del epsilon, dtype
    x, y, mean, inv, scale, marker = res
    g = cotangents[0]
    if relu:
        g = jnp.where(y > 0, g, 0)
    d_residual = None if marker is None else g.astype(marker.dtype)
    axes = tuple(range(x.ndim - 1))
    f32 = mean.dtype
    g, xc = g.astype(f32), x.astype(f32) - mean
    dbias, dscale = jnp.sum(g, axes), jnp.sum(g * xc, axes) * inv  # this device's share
    n = g.size // g.shape[-1]
    if axis_name is not None:
        sums, n = lax.psum(jnp.stack([dbias, dscale]), axis_name), n * lax.psum(1, axis_name)
    else:
        sums = jnp.stack([dbias, dscale])
    # dx = a * (g - mean(g) - xhat * mean(g * xhat)), a = scale * inv, xhat = xc * inv,
    # written with k = a / n: XLA's CSE would merge a broadcast of ``a`` with the forward
    # pass's, and the shared full-size broadcast would then be written out (module).
    k = inv * scale / n
    dx = k * ((n + _channel_zero(inv)) * g - (inv * sums[1]) * xc - sums[0])
    return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(scale.dtype), d_residual


_train_norm.defvjp(_train_fwd, _train_bwd)


class BatchNorm(nn.Module):
    """``nn.BatchNorm`` over the last axis (and ``nn.relu`` after it if ``relu``), with a
    single-pass forward and backward in training (see module).

    Attributes:
      use_running_average: normalise with the running statistics (evaluation) instead of
        the batch's (training, which also updates them).
      momentum: running-statistics momentum (``new = m * old + (1 - m) * batch``).
      epsilon: added to the variance.
      axis_name: mapped axis to average the statistics over (``pmap``); under ``jit`` over
        a sharded batch the statistics are already global.
      dtype: output dtype (default: the input's, promoted with the float32 parameters).
      relu: apply a ReLU to the output.
      scale_init, bias_init: initialisers of ``scale`` and ``bias``.
    """

    use_running_average: bool = False
    momentum: float = 0.99
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: Any = None
    relu: bool = False
    scale_init: Callable = nn.initializers.ones
    bias_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array, residual: jax.Array | None = None) -> jax.Array:
        """Normalises ``x`` (adds ``residual`` if given, then applies the ReLU if ``relu``).

        Args:
          x: ``[..., C]``; statistics are over every axis but the last.
          residual: added after the normalisation and before the ReLU (a residual block's
            shortcut), same shape as ``x``.
        """
        if residual is not None and residual.shape != x.shape:
            raise ValueError(f"residual shape {residual.shape} differs from x's {x.shape}")
        c = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, c, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, c, jnp.float32)
        scale = self.param("scale", self.scale_init, c, jnp.float32)
        bias = self.param("bias", self.bias_init, c, jnp.float32)
        dtype = self.dtype or jnp.promote_types(x.dtype, jnp.float32)
        if self.use_running_average:
            inv = lax.rsqrt(ra_var.value + self.epsilon)
            return _normalize(
                x, ra_mean.value, inv, scale, bias, residual, self.relu, dtype, _select_relu
            )
        # Flax averages over axis_name only after initialisation (no mapped axis then).
        axis_name = None if self.is_initializing() else self.axis_name
        y, mean, var = _train_norm(
            x, scale, bias, residual, self.epsilon, self.relu, axis_name, dtype
        )
        if not self.is_initializing():
            m = self.momentum
            ra_mean.value = m * ra_mean.value + (1 - m) * lax.stop_gradient(mean)
            ra_var.value = m * ra_var.value + (1 - m) * lax.stop_gradient(var)
        return y
