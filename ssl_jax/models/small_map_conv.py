"""Convolution that stays fast on feature maps smaller than its kernel (multi-crop's 2x2).

XLA swaps a convolution's operands when the window is larger than the image (the
operand-swap rewrite: ``prod(kernel) > prod(input)`` over the spatial dimensions); the
swapped convolution carries a window reversal and a feature/batch layout that the CPU
runtime's fast paths (Eigen, YNNPACK) do not take, so it falls back to a naive loop. In a
CIFAR ResNet-18 the 16-px crops of SwAV's multi-crop reach stage 4 at 2x2, and the six
convolutions there (forward and both backward passes) took about 6 s of an 8.5 s step at
batch 16 on 2 cores (``experiments/bench``). Written as im2col + one matrix product, the
same convolution is a GEMM: 40 ms instead of 1.8 s for ``[96, 2, 2, 512]`` (fwd + bwd).

``conv_general_dilated`` has ``lax.conv_general_dilated``'s signature; it takes the im2col
form only where the rewrite would fire on the forward convolution or on its input-gradient
convolution (output smaller than the kernel) and leaves every other convolution to XLA;
where the input map itself has fewer pixels than the kernel has taps it takes one product
with the map matrix instead (``map_matrix_conv``: no products with padding). It
is the convolution of every ``nn.Conv`` in ``ResNet`` and ``ConvNet``, so it also passes the
kernel through ``weight_grad.separate_weight_gradient`` (multi-crop's weight gradients
stay out of YNNPACK fusions) and gives strided convolutions an input gradient by phases
(``strided_conv``: no ``lhs_dilation``, which XLA:CPU runs partly on one thread).
"""

import math

import jax.numpy as jnp
from jax import lax

from ssl_jax.models import map_matrix_conv, strided_conv, weight_grad

_NHWC = ("NHWC", "HWIO", "NHWC")


def _swap_prone(in_hw, kernel_hw, out_hw) -> bool:
    window = math.prod(kernel_hw)
    return window > math.prod(in_hw) or window > math.prod(out_hw)


def _im2col(x, kernel, strides, pads, precision):
    kh, kw, cin, cout = kernel.shape
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    (sh, sw), (h, w) = strides, x.shape[1:3]
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    cols = [
        x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    patches = jnp.concatenate(cols, axis=-1)  # [B, oh, ow, kh * kw * cin], (i, j, c) order
    return jnp.matmul(patches, kernel.reshape(kh * kw * cin, cout), precision=precision)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
):
    """``lax.conv_general_dilated``, as a GEMM for NHWC maps smaller than the kernel
    (module docstring)."""
    rhs = weight_grad.separate_weight_gradient(rhs)
    plain = (
        lhs.ndim == 4
        and feature_group_count == 1
        and batch_group_count == 1
        and preferred_element_type is None
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    )
    if plain:
        kernel_hw = rhs.shape[:2]
        pads = (
            lax.padtype_to_pads(lhs.shape[1:3], kernel_hw, window_strides, padding)
            if isinstance(padding, str)
            else tuple(tuple(p) for p in padding)
        )
        out_hw = map_matrix_conv.output_hw(lhs.shape[1:3], kernel_hw, window_strides, pads)
        valid = min(out_hw) > 0 and min(map(min, pads)) >= 0
        if valid and _swap_prone(lhs.shape[1:3], kernel_hw, out_hw):
            if map_matrix_conv.pays(lhs.shape[1:3], kernel_hw):
                return map_matrix_conv.map_matrix_conv(
                    lhs, rhs, tuple(window_strides), pads, precision
                )
            return _im2col(lhs, rhs, tuple(window_strides), pads, precision)
        if valid and strided_conv.phase_decomposable(lhs.shape[1:3], window_strides):
            return strided_conv.strided_conv(lhs, rhs, tuple(window_strides), pads, precision)
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
