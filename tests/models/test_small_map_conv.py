"""The GEMM form for maps smaller than the kernel: same values and gradients as XLA's
convolution, taken exactly where XLA's operand swap would fire, and used by the encoders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ssl_jax.models import ConvNet, resnet18, small_map_conv
from tests.models import numpy_ref as ref
from tests.models.common import primitives, randomize

NHWC = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize(
    "shape, cout, stride, gemm",
    [
        ((3, 2, 2, 5), 4, 1, True),  # 2x2 map, 3x3 kernel: multi-crop stage 4 (map matrix)
        ((3, 1, 1, 5), 4, 1, True),
        ((3, 4, 4, 5), 6, 2, True),  # 4x4 -> 2x2: the input gradient would swap
        ((3, 2, 3, 5), 4, 1, True),  # 6 < 9 positions
        ((3, 4, 4, 5), 6, 1, False),  # 16 >= 9: left to XLA
        ((3, 8, 8, 5), 6, 2, False),  # strided: the input gradient by phases
    ],
)
def test_values_and_gradients_match_xla_and_numpy(shape, cout, stride, gemm):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    w = rng.normal(size=(3, 3, shape[-1], cout)).astype(np.float32)
    ct = rng.normal(size=ref.conv2d(x, w, stride, 1).shape).astype(np.float32)

    def loss(conv, x, w):
        return jnp.sum(conv(x, w, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=NHWC) * ct)

    ours = jax.jit(
        jax.value_and_grad(lambda x, w: loss(small_map_conv.conv_general_dilated, x, w), (0, 1))
    )
    xla = jax.jit(jax.value_and_grad(lambda x, w: loss(lax.conv_general_dilated, x, w), (0, 1)))
    (v, (gx, gw)), (v_ref, (gx_ref, gw_ref)) = ours(x, w), xla(x, w)
    np.testing.assert_allclose(v, v_ref, rtol=1e-5)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-5, atol=1e-4)
    got = small_map_conv.conv_general_dilated(
        x, w, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=NHWC
    )
    np.testing.assert_allclose(got, ref.conv2d(x.astype(np.float64), w, stride, 1), atol=1e-4)
    fwd = primitives(
        lambda x, w: small_map_conv.conv_general_dilated(
            x, w, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=NHWC
        ),
        x,
        w,
    )
    assert ("conv_general_dilated" not in fwd) == gemm
    assert ("dot_general" in fwd) == gemm


def test_padding_strings_and_other_layouts():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 2, 2, 3)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    args = (x, w, (1, 1), "SAME")
    assert "conv_general_dilated" not in primitives(
        lambda a, b: small_map_conv.conv_general_dilated(a, b, *args[2:], dimension_numbers=NHWC),
        x,
        w,
    )
    np.testing.assert_allclose(
        small_map_conv.conv_general_dilated(*args, dimension_numbers=NHWC),
        lax.conv_general_dilated(*args, dimension_numbers=NHWC),
        rtol=1e-5,
        atol=1e-5,
    )
    # NCHW, dilations and groups are passed to XLA unchanged.
    xc = np.transpose(x, (0, 3, 1, 2))
    wc = np.transpose(w, (3, 2, 0, 1))
    nchw = ("NCHW", "OIHW", "NCHW")
    assert "conv_general_dilated" in primitives(
        lambda a, b: small_map_conv.conv_general_dilated(
            a, b, (1, 1), ((1, 1), (1, 1)), dimension_numbers=nchw
        ),
        xc,
        wc,
    )
    assert "conv_general_dilated" in primitives(
        lambda a, b: small_map_conv.conv_general_dilated(
            a, b, (1, 1), ((2, 2), (2, 2)), rhs_dilation=(2, 2), dimension_numbers=NHWC
        ),
        x,
        w,
    )


@pytest.mark.parametrize("model", ["resnet18", "convnet"])
def test_encoders_on_small_crops_equal_the_plain_convolution(model, monkeypatch):
    """Same parameters, same outputs and gradients with the GEMM form switched off."""
    net = resnet18(stem="cifar") if model == "resnet18" else ConvNet(widths=(8, 16, 16, 32))
    x = np.random.default_rng(2).normal(size=(4, 16, 16, 3)).astype(np.float32)
    variables = randomize(net.init(jax.random.key(0), x, train=False), seed=3)

    def loss(params, x):
        out, _ = net.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
        return jnp.sum(jnp.tanh(out))

    def run():
        return jax.jit(jax.value_and_grad(loss))(variables["params"], x)

    assert "dot_general" in primitives(lambda p, x: loss(p, x), variables["params"], x)
    ours = run()
    monkeypatch.setattr(small_map_conv, "_swap_prone", lambda *a: False)
    plain = run()
    np.testing.assert_allclose(ours[0], plain[0], rtol=1e-4)
    for a, b in zip(jax.tree.leaves(ours[1]), jax.tree.leaves(plain[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * float(np.max(np.abs(b))) + 1e-6)
