"""The benchmark's "before" sides of the changes to the ConvNet's layers: each computes the same
function as the current code (loss, gradients, running statistics) with a different
compiled step, so a before/after figure times one change and nothing else."""

import jax
import numpy as np
import pytest

from experiments.bench import baselines
from ssl_jax.train import xla_cpu
from tests.models.common import convnet_train_step

CONVNET_BASELINES = ["flax_max_pool", "relu_before_pool", "maximum_pool", "constant_zeros"]


def _loss_and_grads():
    step, params, text = convnet_train_step()
    return step(params), text


@pytest.mark.parametrize("name", CONVNET_BASELINES)
def test_convnet_baseline_is_the_same_function_compiled_differently(name):
    (loss, stats), grads = (now := _loss_and_grads())[0]
    with getattr(baselines, name)():
        ((loss_b, stats_b), grads_b), text_b = _loss_and_grads()
    assert text_b != now[1]
    np.testing.assert_allclose(loss_b, loss, rtol=1e-6)
    leaves, leaves_b = jax.tree.leaves((grads, stats)), jax.tree.leaves((grads_b, stats_b))
    for a, b in zip(leaves, leaves_b, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_maximum_pool_gives_the_pools_their_maxima_back():
    text = _loss_and_grads()[1]
    with baselines.maximum_pool():
        text_b = _loss_and_grads()[1]
    # Two maxima per pool (top row, bottom row), three pools; the current pools select.
    assert text_b.count("stablehlo.maximum") == text.count("stablehlo.maximum") + 6


def test_eigen_dots_takes_only_the_dot_type_out_of_the_step_options():
    key = "xla_cpu_experimental_ynn_fusion_type"
    now = xla_cpu.step_compiler_options(jax.devices())
    with baselines.eigen_dots():
        before = xla_cpu.step_compiler_options(jax.devices())
    assert xla_cpu.step_compiler_options(jax.devices()) == now  # restored on leaving
    assert set(now[key].split(",")) - set(before[key].split(",")) == {"LIBRARY_FUSION_TYPE_DOT"}
    assert set(before[key].split(",")) == {
        "LIBRARY_FUSION_TYPE_REDUCE",
        "LIBRARY_FUSION_TYPE_ELTWISE",
    }


@pytest.mark.parametrize("queue_in_use", [False, True])
def test_swav_whole_loss_in_cond_is_the_same_loss(queue_in_use):
    from ssl_jax import build
    from tests.methods import harness

    method = build.method(harness.tiny_config("swav"), harness.NUM_TRAIN_EXAMPLES)
    x, _ = harness.images(0)
    state = method.init(jax.random.key(0), x)
    views = method.views(jax.random.split(jax.random.key(1), x.shape[0]), x)
    queue = jax.random.normal(jax.random.key(2), state["aux"]["queue"].shape)
    aux = dict(
        queue=queue / np.linalg.norm(queue, axis=-1, keepdims=True),
        queue_filled=np.int32(method.queue_size if queue_in_use else 0),
    )

    @jax.jit
    def loss_and_grads(params):
        def f(p):
            loss, out = method.loss(p, state["batch_stats"], aux, views, None, 5)
            return loss, out.metrics

        return jax.value_and_grad(f, has_aux=True)(params)

    (loss, metrics), grads = loss_and_grads(state["params"])
    with baselines.swav_whole_loss_in_cond():
        (loss_b, metrics_b), grads_b = jax.jit(loss_and_grads.__wrapped__)(state["params"])
    assert metrics["queue_in_use"] == metrics_b["queue_in_use"] == float(queue_in_use)
    np.testing.assert_allclose(loss_b, loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_b), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
