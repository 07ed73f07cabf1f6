"""The "before" side of ssl_jax performance changes, kept to measure them in the same run.

``color_jitter_all_ops`` is ``ssl_jax.augment.color.color_jitter`` as it was before the
change to two evaluations per slot: every slot evaluated all enabled ops and selected one.
``tests/augment/test_color_jitter_slots.py`` checks the current function against it bit
for bit; ``input_bench.py`` times both. ``xla_small_map_conv`` gives the encoders' small
feature maps back to XLA's convolution (before ``ssl_jax.models.small_map_conv``);
``flax_max_pool`` gives the ConvNet back ``nn.max_pool`` (before
``ssl_jax.models.max_pool``); ``fused_weight_grads`` drops the kernel-gradient barrier
(before ``ssl_jax.models.weight_grad``); ``flax_batch_norm`` gives the encoders Flax's
``nn.BatchNorm`` and a separate ``nn.relu`` (before ``ssl_jax.models.batch_norm``);
``relu_before_pool`` gives the ConvNet's pooled blocks their ReLU back before the max-pool;
``maximum_pool`` gives ``max_pool_2x2`` back its ``jnp.maximum`` window maxima and the
pooled blocks a separate ``nn.relu`` (before the selects and the folded ReLU);
``constant_zeros`` gives ``batch_norm`` back its constant ReLU floor and count ``n``
(before ``batch_norm._channel_zero``); ``eigen_dots`` gives the step's XLA:CPU options back
their dots in Eigen (before ``LIBRARY_FUSION_TYPE_DOT`` in ``ssl_jax.train.xla_cpu``);
``xla_transposed_conv`` gives strided convolutions back XLA's input gradient (a
convolution with ``lhs_dilation``, before ``ssl_jax.models.strided_conv``);
``im2col_small_maps`` gives convolutions of maps smaller than the kernel back their im2col
product (before ``ssl_jax.models.map_matrix_conv``);
``swav_whole_loss_in_cond`` gives SwAV's loss back its conditional around the whole loss
with the queue scored every step (before the conditional around the codes only);
``maximum_relu_without_autodiff`` gives ``batch_norm``'s passes without autodiff back
their ``max`` ReLU (before ``batch_norm._select_relu``);
``eval_with_xla_defaults`` compiles frozen-feature extraction with XLA's default options
again (before ``ssl_jax.eval.features`` took the train step's);
``step_bench.before_after`` times each against the current code.
"""

import contextlib
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax import losses
from ssl_jax.augment import color
from ssl_jax.eval import features
from ssl_jax.methods import swav
from ssl_jax.models import (
    batch_norm,
    convnet,
    map_matrix_conv,
    max_pool,
    small_map_conv,
    strided_conv,
    weight_grad,
)
from ssl_jax.train import xla_cpu


def color_jitter_all_ops(
    key,
    image,
    *,
    brightness=0.0,
    contrast=0.0,
    saturation=0.0,
    hue=0.0,
    brightness_mode="multiplicative",
):
    """Brightness, contrast, saturation, hue in random order; all ops computed per slot."""
    k_order, k_b, k_c, k_s, k_h = jax.random.split(key, 5)

    def factor(k, s):
        return jax.random.uniform(k, minval=max(0.0, 1.0 - s), maxval=1.0 + s)

    ops = []
    if brightness > 0:
        if brightness_mode == "additive":
            d = jax.random.uniform(k_b, minval=-brightness, maxval=brightness)
            ops.append(lambda x: color.adjust_brightness(x, d))
        else:
            f_b = factor(k_b, brightness)
            ops.append(lambda x: color.scale_brightness(x, f_b))
    if contrast > 0:
        f_c = factor(k_c, contrast)
        ops.append(lambda x: color.adjust_contrast(x, f_c))
    if saturation > 0:
        f_s = factor(k_s, saturation)
        ops.append(lambda x: color.adjust_saturation(x, f_s))
    if hue > 0:
        d_h = jax.random.uniform(k_h, minval=-hue, maxval=hue)
        ops.append(lambda x: color.adjust_hue(x, d_h))
    if not ops:
        return image
    order = jax.random.permutation(k_order, len(ops))
    for slot in range(len(ops)):
        image = jax.lax.select_n(order[slot], *[op(image) for op in ops])
    return image


def old_color_jitter():
    """Within the block, functions traced use :func:`color_jitter_all_ops`."""
    return mock.patch.object(color, "color_jitter", color_jitter_all_ops)


def xla_small_map_conv():
    """Within the block, encoders traced run every convolution through XLA's own."""
    return mock.patch.object(small_map_conv, "_swap_prone", lambda *shapes: False)


def _then_relu(pool):
    """``pool`` with ``max_pool_2x2``'s signature, its ReLU a separate ``nn.relu``."""
    return lambda x, *, relu=False: nn.relu(pool(x)) if relu else pool(x)


def flax_max_pool():
    """Within the block, ConvNets traced pool with ``nn.max_pool`` (``select_and_scatter``
    in the backward pass)."""
    return mock.patch.object(
        convnet, "max_pool_2x2", _then_relu(lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)))
    )


def fused_weight_grads():
    """Within the block, encoders traced leave their kernels' cotangents without the
    barrier, so XLA:CPU may fuse multi-crop's weight gradients into YNNPACK."""
    return mock.patch.object(weight_grad, "separate_weight_gradient", lambda kernel: kernel)


class FlaxBatchNorm(batch_norm.BatchNorm):
    """``batch_norm.BatchNorm`` (same fields) computed the autodiff way: ``nn.BatchNorm``,
    then the residual's addition and ``nn.relu`` if ``relu``."""

    @nn.compact
    def __call__(self, x, residual=None):
        fields = ("use_running_average", "momentum", "epsilon", "axis_name", "dtype")
        bn = nn.BatchNorm(
            **{f: getattr(self, f) for f in fields},
            scale_init=self.scale_init,
            bias_init=self.bias_init,
        )
        y = bn(x) if residual is None else bn(x) + residual
        return nn.relu(y) if self.relu else y


def flax_batch_norm():
    """Within the block, encoders traced normalise with :class:`FlaxBatchNorm`."""
    return mock.patch.object(batch_norm, "BatchNorm", FlaxBatchNorm)


def relu_before_pool():
    """Within the block, ConvNets traced apply a pooled block's ReLU (fused into its
    batch-norm) before the max-pool, at full size."""
    return mock.patch.object(convnet, "_RELU_AFTER_POOL", False)


def _maximum_pool_and_winner(x, relu):
    """``max_pool._pool_and_winner`` as it was: ``jnp.maximum`` for the maxima, no ReLU."""
    assert not relu, "the ReLU was a separate nn.relu"
    a, b, c, d = max_pool._windows(x)
    top, bottom = jnp.maximum(a, b), jnp.maximum(c, d)
    top_wins = top >= bottom
    winner = jnp.where(top_wins, jnp.where(a >= b, 0, 1), jnp.where(c >= d, 2, 3))
    return jnp.where(top_wins, top, bottom), winner.astype(jnp.int8)


def maximum_pool():
    """Within the block, ConvNets traced take the window maxima with ``jnp.maximum`` (which
    XLA:CPU gives to YNNPACK) and apply a pooled block's ReLU as a separate ``nn.relu``."""
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(max_pool, "_pool_and_winner", _maximum_pool_and_winner))
    stack.enter_context(
        mock.patch.object(convnet, "max_pool_2x2", _then_relu(max_pool.max_pool_2x2))
    )
    return stack


def constant_zeros():
    """Within the block, encoders traced take their batch-norms' ReLU floor and backward
    count as constants (one broadcast per activation shape, shared by every layer)."""
    return mock.patch.object(batch_norm, "_channel_zero", lambda v: 0)


def eigen_dots():
    """Within the block, train steps compiled take the XLA:CPU options without the dot
    type: YNNPACK keeps reductions and element-wise fusions, Eigen runs the bare dots."""
    types = xla_cpu.CPU_STEP_OPTIONS["xla_cpu_experimental_ynn_fusion_type"].split(",")
    without = ",".join(t for t in types if t != "LIBRARY_FUSION_TYPE_DOT")
    options = {**xla_cpu.CPU_STEP_OPTIONS, "xla_cpu_experimental_ynn_fusion_type": without}
    return mock.patch.object(xla_cpu, "CPU_STEP_OPTIONS", options)


def _swav_loss_whole_in_cond(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
    """``SwAV.loss`` as it was: with a queue, the queue scored against the prototypes
    every step (in use or not) and the whole loss, its gradient too, under ``lax.cond``."""
    h, scores, emb, stats = self.forward(params, batch_stats, views)
    kw = dict(
        num_high_res=self.num_high_res,
        temperature=self.temperature,
        epsilon=self.epsilon,
        num_iters=self.sinkhorn_iters,
        axis_name=axis_name,
    )
    metrics = {}
    if not self.queue_size:
        loss, new_aux = losses.swav_loss(scores, **kw), aux
    else:
        use_queue = (step >= self.queue_start_step) & (aux["queue_filled"] >= self.queue_size)
        queue_scores = self._queue_scores(params, aux["queue"], axis_name)
        loss = lax.cond(
            use_queue,
            lambda: losses.swav_loss(scores, queue_scores=queue_scores, **kw),
            lambda: losses.swav_loss(scores, **kw),
        )
        new_aux = self._push(aux, emb[: self.num_high_res], step, axis_name)
        metrics["queue_in_use"] = use_queue.astype(jnp.float32)
    return loss, self.output(loss, stats, new_aux, metrics, h, emb)


def swav_whole_loss_in_cond():
    """Within the block, SwAV steps traced use :func:`_swav_loss_whole_in_cond`."""
    return mock.patch.object(swav.SwAV, "loss", _swav_loss_whole_in_cond)


def xla_transposed_conv():
    """Within the block, encoders traced leave strided convolutions' input gradients to
    XLA (a convolution with ``lhs_dilation``)."""
    return mock.patch.object(strided_conv, "phase_decomposable", lambda *shapes: False)


def im2col_small_maps():
    """Within the block, encoders traced give every convolution of a map smaller than its
    kernel to im2col (its patches and one product), not to the map matrix."""
    return mock.patch.object(map_matrix_conv, "pays", lambda *shapes: False)


def maximum_relu_without_autodiff():
    """Within the block, batch-norms traced without autodiff (a target network's forward
    pass, evaluation) take their ReLU as a ``max``, which YNNPACK's element-wise fusion
    takes into the next convolution as its prologue."""
    return mock.patch.object(batch_norm, "_select_relu", jnp.maximum)


def eval_with_xla_defaults():
    """Within the block, feature extractions compiled (a new ``encode_fn``: they are cached
    per function) take XLA's default options, not the train step's."""
    return mock.patch.object(features, "_compiler_options", lambda mesh: None)
