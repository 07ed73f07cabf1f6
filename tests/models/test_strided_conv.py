"""Strided convolutions with their input gradient by phases: the same values and gradients
as XLA's convolution, no ``lhs_dilation`` left in the gradient, used by the encoders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from experiments.bench import baselines
from ssl_jax.models import small_map_conv, strided_conv
from tests.models.common import assert_resnet_grads_unchanged_by

NHWC = ("NHWC", "HWIO", "NHWC")


def _loss(conv, ct):
    return lambda x, w, s, pads: jnp.sum(conv(x, w, s, pads) * ct)


def _xla(x, w, s, pads):
    return lax.conv_general_dilated(x, w, s, pads, dimension_numbers=NHWC)


@pytest.mark.parametrize(
    "hw, k, strides, pads",
    [
        ((8, 8), 3, (2, 2), ((1, 1), (1, 1))),  # ResNet's 3x3 stride-2 convolutions
        ((8, 8), 1, (2, 2), ((0, 0), (0, 0))),  # its projection shortcut: odd pixels get 0
        ((8, 12), 3, (2, 2), ((1, 0), (0, 1))),  # asymmetric padding, rectangular map
        ((8, 8), 3, (2, 2), ((0, 0), (0, 0))),  # the last row and column get no gradient
        ((9, 9), 3, (3, 3), ((1, 1), (1, 1))),
        ((6, 8), 3, (1, 2), ((1, 1), (1, 1))),  # stride 1 along one axis
        ((8, 8), 7, (2, 2), ((3, 3), (3, 3))),  # the ImageNet stem's 7x7
        ((8, 8), 2, (2, 2), ((0, 0), (0, 0))),
    ],
)
def test_values_and_gradients_match_xla(hw, k, strides, pads):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = rng.normal(size=(2, *hw, 3))
        w = rng.normal(size=(k, k, 3, 4))
        y = _xla(x, w, strides, pads)
        ct = rng.normal(size=y.shape)
        np.testing.assert_array_equal(strided_conv.strided_conv(x, w, strides, pads), y)
        want = jax.grad(_loss(_xla, ct), (0, 1))(x, w, strides, pads)
        got = jax.grad(_loss(strided_conv.strided_conv, ct), (0, 1))(x, w, strides, pads)
        for g, g_ref in zip(got, want, strict=True):
            np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-12)


def test_phase_decomposable_needs_a_stride_and_divisible_sizes():
    assert strided_conv.phase_decomposable((32, 32), (2, 2))
    assert not strided_conv.phase_decomposable((32, 32), (1, 1))
    assert not strided_conv.phase_decomposable((31, 32), (2, 2))


def _grad_text(x_shape):
    x = jnp.ones(x_shape)
    w = jnp.ones((3, 3, 4, 6))

    def loss(x, w):
        y = small_map_conv.conv_general_dilated(
            x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=NHWC
        )
        return jnp.sum(jnp.sin(y))

    return jax.jit(jax.grad(loss, (0, 1))).lower(x, w).as_text()


def test_encoders_convolution_takes_the_phases_where_it_can():
    assert "lhs_dilate = [2, 2]" not in _grad_text((2, 8, 8, 4))
    with baselines.xla_transposed_conv():  # the benchmark's "before": XLA's own gradient
        assert "lhs_dilate = [2, 2]" in _grad_text((2, 8, 8, 4))
    assert "lhs_dilate = [2, 2]" in _grad_text((2, 7, 7, 4))  # 7 % 2: left to XLA


def test_resnet_gradients_match_xlas_input_gradient():
    assert_resnet_grads_unchanged_by(baselines.xla_transposed_conv, (16, 16))
