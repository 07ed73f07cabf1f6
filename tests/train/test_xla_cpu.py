"""The train step's XLA:CPU options: when they apply, that an unknown option falls back to
XLA's defaults, that ``jit_step`` uses them, which library they give dots and convolutions,
and that a network compiled with them computes what the default compilation computes (they
change which library runs an op, not the op)."""

import logging
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import losses
from ssl_jax.models.resnet import ResNet
from ssl_jax.train import step as step_lib
from ssl_jax.train import xla_cpu
from tests.models.common import ynn_fusion_bodies


def _fake(platform):
    return types.SimpleNamespace(platform=platform)


def test_options_only_for_cpu_meshes():
    assert xla_cpu.step_compiler_options(jax.devices()) == xla_cpu.CPU_STEP_OPTIONS
    assert xla_cpu.step_compiler_options([_fake("cpu"), _fake("gpu")]) is None
    assert xla_cpu.step_compiler_options([_fake("tpu")]) is None
    assert xla_cpu.step_compiler_options([]) is None


def test_unknown_option_falls_back_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(xla_cpu, "CPU_STEP_OPTIONS", {"xla_cpu_no_such_option_exists": "1"})
    xla_cpu._supported.cache_clear()
    with caplog.at_level(logging.WARNING, logger=xla_cpu.__name__):
        assert xla_cpu.step_compiler_options(jax.devices()) is None
    assert "not accepted by this jaxlib" in caplog.text
    xla_cpu._supported.cache_clear()


def test_jit_step_compiles_with_the_options(monkeypatch):
    seen = []

    def spy(devices):
        seen.append(len(list(devices)))
        return xla_cpu.CPU_STEP_OPTIONS

    monkeypatch.setattr(xla_cpu, "step_compiler_options", spy)
    mesh = step_lib.data_mesh()
    fn = lambda state, batch, key: (state, {"s": jnp.sum(batch["image"])})
    args = ({"w": jnp.ones(2)}, {"image": jnp.ones((8, 2))}, jax.random.key(0))
    step_lib.jit_step(fn, mesh).lower(*args).compile()
    assert seen == [jax.device_count()]
    step_lib.jit_step(fn, mesh, tuned=False).lower(*args).compile()
    assert seen == [jax.device_count()]  # tuned=False does not ask for options


def _conv_head_loss(w, v, x):
    dn = ("NHWC", "HWIO", "NHWC")
    h = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)
    z = jnp.mean(jax.nn.relu(h), axis=(1, 2)) @ v  # a convolution, then a projection head
    return jnp.sum(jnp.tanh(z) ** 2)


def _ynn_ops(options):
    """(dots inside YNNPACK fusions, convolutions inside them, dots, convolutions)."""
    shapes = [(3, 3, 16, 64), (64, 256), (32, 16, 16, 16)]
    args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
    grad = jax.jit(jax.grad(_conv_head_loss, argnums=(0, 1)))
    text = grad.lower(*args).compile(options).as_text()
    ynn = ynn_fusion_bodies(text)
    count = lambda op, texts: sum(t.count(f" {op}(") for t in texts)
    return (
        count("dot", ynn),
        count("convolution", ynn),
        count("dot", [text]),
        count("convolution", [text]),
    )


def test_options_give_dots_to_ynnpack_and_convolutions_to_eigen():
    ynn_dots, ynn_convs, dots, convs = _ynn_ops(xla_cpu.CPU_STEP_OPTIONS)
    assert (dots, convs) == (3, 2)  # the head's forward and two gradients; conv and its grad
    assert ynn_convs == 0
    # The head's forward (with its tanh epilogue) and its input gradient (a bare dot); the
    # weight gradient, contracting over the batch, stays in Eigen.
    assert ynn_dots == 2
    # Without the dot type only the dot with an element-wise epilogue goes to YNNPACK.
    no_dots = "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_ELTWISE"
    assert _ynn_ops({"xla_cpu_experimental_ynn_fusion_type": no_dots})[:2] == (1, 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_tuned_compilation_computes_the_same_gradients(seed):
    # Convolutions (forward, input and weight gradients, stride 2 and projection shortcut),
    # BatchNorm statistics and a loss with exp/log reductions: the ops the options move.
    model = ResNet(stage_sizes=(1, 1), stem="cifar", width_multiplier=1)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(8, 16, 16, 3)).astype(np.float32))
    variables = model.init(jax.random.key(seed), x, train=True)

    def loss(params):
        h, _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        return losses.nt_xent_loss(h[:4], h[4:], temperature=0.5) + jnp.mean(h**2)

    fn = jax.value_and_grad(loss)
    plain = jax.jit(fn)(variables["params"])
    tuned = jax.jit(fn, compiler_options=xla_cpu.CPU_STEP_OPTIONS)(variables["params"])
    np.testing.assert_allclose(tuned[0], plain[0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(tuned[1]), jax.tree.leaves(plain[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * float(jnp.max(jnp.abs(b))))
