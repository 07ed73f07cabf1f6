"""Convolutions of maps smaller than the kernel as one product with the map matrix: the
same values and gradients as XLA's convolution and a numpy one, taken by the encoders'
convolution exactly where the map has fewer pixels than the kernel has taps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from experiments.bench import baselines
from ssl_jax.models import map_matrix_conv, small_map_conv
from tests.models import numpy_ref as ref
from tests.models.common import assert_resnet_grads_unchanged_by, primitives

NHWC = ("NHWC", "HWIO", "NHWC")


def _xla(x, w, s, pads):
    return lax.conv_general_dilated(x, w, s, pads, dimension_numbers=NHWC)


def _loss(conv, ct):
    return lambda x, w, s, pads: jnp.sum(conv(x, w, s, pads) * ct)


@pytest.mark.parametrize(
    "hw, kernel_hw, strides, pads",
    [
        ((2, 2), (3, 3), (1, 1), ((1, 1), (1, 1))),  # multi-crop's stage 4: every tap used
        ((1, 1), (3, 3), (1, 1), ((1, 1), (1, 1))),  # only the centre tap
        ((2, 3), (3, 3), (1, 1), ((1, 1), (1, 1))),
        ((2, 2), (3, 3), (2, 2), ((1, 1), (1, 1))),  # stride 2: one output pixel
        ((2, 2), (3, 3), (1, 1), ((0, 1), (1, 0))),  # asymmetric padding
        ((3, 3), (5, 5), (1, 1), ((2, 2), (2, 2))),
        ((3, 2), (2, 4), (1, 1), ((1, 0), (1, 1))),  # rectangular kernel
    ],
)
def test_values_and_gradients_match_xla(hw, kernel_hw, strides, pads):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = rng.normal(size=(3, *hw, 5))
        w = rng.normal(size=(*kernel_hw, 5, 4))
        y = _xla(x, w, strides, pads)
        ct = rng.normal(size=y.shape)
        got = map_matrix_conv.map_matrix_conv(x, w, strides, pads)
        np.testing.assert_allclose(got, y, rtol=1e-12, atol=1e-12)
        want = jax.grad(_loss(_xla, ct), (0, 1))(x, w, strides, pads)
        got = jax.grad(_loss(map_matrix_conv.map_matrix_conv, ct), (0, 1))(x, w, strides, pads)
        for g, g_ref in zip(got, want, strict=True):
            np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-12)


def test_matches_numpy_convolution_and_its_gradient():
    # numpy_ref.conv2d is written from the definition; its gradient here by finite
    # differences of the float64 loss.
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(2, 2, 2, 3)), rng.normal(size=(3, 3, 3, 2))
    ct = rng.normal(size=(2, 2, 2, 2))
    with jax.enable_x64(True):
        pads = ((1, 1), (1, 1))
        got = map_matrix_conv.map_matrix_conv(x, w, (1, 1), pads)
        np.testing.assert_allclose(got, ref.conv2d(x, w, 1, 1), rtol=1e-12)
        _, gw = jax.grad(_loss(map_matrix_conv.map_matrix_conv, ct), (0, 1))(x, w, (1, 1), pads)
    eps, idx = 1e-6, (0, 2, 1, 1)
    wp, wm = w.copy(), w.copy()
    wp[idx] += eps
    wm[idx] -= eps
    fd = (np.sum(ref.conv2d(x, wp, 1, 1) * ct) - np.sum(ref.conv2d(x, wm, 1, 1) * ct)) / (2 * eps)
    np.testing.assert_allclose(gw[idx], fd, rtol=1e-6)


def test_pays_only_below_the_kernels_taps():
    assert map_matrix_conv.pays((2, 2), (3, 3))
    assert map_matrix_conv.pays((1, 1), (3, 3))
    assert map_matrix_conv.pays((2, 4), (3, 3))
    assert not map_matrix_conv.pays((3, 3), (3, 3))
    assert not map_matrix_conv.pays((4, 4), (3, 3))


def _primitives(shape, stride=1):
    x, w = jnp.ones(shape), jnp.ones((3, 3, shape[-1], 6))

    def fwd(x, w):
        return small_map_conv.conv_general_dilated(
            x, w, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=NHWC
        )

    return primitives(fwd, x, w)


def test_encoders_convolution_takes_the_map_matrix_below_the_taps():
    # im2col pads the map and copies patches; the map matrix reshapes it as it is.
    assert "pad" not in _primitives((2, 2, 2, 4))
    assert "dot_general" in _primitives((2, 2, 2, 4))
    with baselines.im2col_small_maps():  # the benchmark's "before"
        assert "pad" in _primitives((2, 2, 2, 4))
    assert "pad" not in _primitives((2, 2, 4, 4))  # 8 pixels
    assert "pad" in _primitives((2, 4, 4, 4), stride=2)  # 16 pixels to 4: im2col
    assert "conv_general_dilated" in _primitives((2, 4, 4, 4))  # left to XLA


def test_resnet_on_small_crops_gradients_match_im2col():
    assert_resnet_grads_unchanged_by(baselines.im2col_small_maps, (8, 8))
