"""The kernel's gradient barrier: an identity with identical gradients, and the weight
gradients of a kernel shared by two input sizes stay out of YNNPACK fusions."""

import re

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ssl_jax.models import small_map_conv
from ssl_jax.models.weight_grad import separate_weight_gradient
from ssl_jax.train import xla_cpu
from tests.models.common import ynn_fusion_bodies

NHWC = ("NHWC", "HWIO", "NHWC")


def _two_sizes_loss(conv):
    def loss(w, x1, x2, g1, g2):
        y1 = conv(x1, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC)
        y2 = conv(x2, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC)
        return jnp.sum(jnp.maximum(y1, 0) * g1) + jnp.sum(jnp.maximum(y2, 0) * g2)

    return loss


def _inputs():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 8, 16)).astype(np.float32)
    x1 = rng.normal(size=(4, 16, 16, 8)).astype(np.float32)
    x2 = rng.normal(size=(12, 8, 8, 8)).astype(np.float32)
    g1 = rng.normal(size=(4, 16, 16, 16)).astype(np.float32)
    g2 = rng.normal(size=(12, 8, 8, 16)).astype(np.float32)
    return w, x1, x2, g1, g2


def test_identity_with_the_same_gradients():
    args = _inputs()
    np.testing.assert_array_equal(separate_weight_gradient(args[0]), args[0])
    plain = jax.grad(_two_sizes_loss(lax.conv_general_dilated), argnums=(0, 1, 2))(*args)
    ours = jax.jit(jax.grad(_two_sizes_loss(small_map_conv.conv_general_dilated), (0, 1, 2)))
    for a, b in zip(plain, ours(*args), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    # Under vmap (a batch of kernels) it is still the identity with the same gradient.
    ws = jnp.stack([args[0], 2 * args[0]])
    np.testing.assert_array_equal(jax.vmap(separate_weight_gradient)(ws), ws)
    np.testing.assert_array_equal(
        jax.vmap(jax.grad(lambda w: jnp.sum(separate_weight_gradient(w) ** 2)))(ws), 2 * ws
    )


def test_shared_kernel_weight_gradients_stay_out_of_ynnpack_fusions():
    options = xla_cpu.step_compiler_options(jax.devices("cpu"))
    assert options == xla_cpu.CPU_STEP_OPTIONS  # this jaxlib takes the step's options
    step = jax.jit(jax.grad(_two_sizes_loss(small_map_conv.conv_general_dilated)))
    # Compiled only: sizes of a multi-crop stage (at the tiny sizes above XLA fuses nothing).
    shapes = [
        (3, 3, 64, 64),
        (16, 32, 32, 64),
        (48, 16, 16, 64),
        (16, 32, 32, 64),
        (48, 16, 16, 64),
    ]
    args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
    text = step.lower(*args).compile(options).as_text()
    ynn = ynn_fusion_bodies(text)
    assert ynn, "expected YNNPACK fusions under the step's options"
    assert not [body for body in ynn if " convolution(" in body]
    assert len(re.findall(r" convolution\(", text)) >= 4  # two forward, two weight gradients
