"""Strided convolution whose input gradient is a few stride-1 convolutions (one per phase).

The input gradient of a stride-s convolution is a transposed convolution: XLA writes it as
a convolution with ``lhs_dilation = s``. XLA:CPU runs that form through a path of its own
(``EigenTransposedConv2D``): a zero-filled scratch matrix of ``batch x in_pixels x
kernel_taps x channels`` floats (75 MB for the first stride-2 convolution of a CIFAR
ResNet-18 at batch 128), filled by a parallel matrix product and then scattered into the
zeroed output on one thread. In the ResNet-18 steps of ``experiments/bench`` that memset
and scatter were the largest part of the time when only one of the two cores was busy,
and the scratch's pages are faulted in afresh each step.

Split by output phase, the same gradient has no dilation: the input pixels ``p`` with
``(p + pad_low) % s == r`` receive exactly the kernel taps ``a`` with ``a % s == r``, so
each of the ``s x s`` phases is a stride-1 convolution of the output cotangent with the
flipped sub-kernel ``w[ry::s, rx::s]``, and the phases interleave into the gradient. The
products are the same ones (no multiplications by inserted zeros); the phases run on
XLA's ordinary convolution path. The forward convolution and the kernel's gradient are
XLA's, unchanged.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def phase_decomposable(in_hw, strides) -> bool:
    """Whether :func:`strided_conv` applies: some stride > 1 and every spatial size a
    multiple of its stride (the phases then interleave into the whole input)."""
    return any(s > 1 for s in strides) and all(
        n % s == 0 for n, s in zip(in_hw, strides, strict=True)
    )


def _pad_or_crop(x, axis: int, lo: int, hi: int):
    """Pads ``x`` along ``axis`` with zeros (positive amounts) or crops it (negative)."""
    n = x.shape[axis]
    x = lax.slice_in_dim(x, max(-lo, 0), n - max(-hi, 0), axis=axis)
    pads = [(0, 0)] * x.ndim
    pads[axis] = (max(lo, 0), max(hi, 0))
    return jnp.pad(x, pads)


def _phase(g, kernel, in_hw, pads, strides, rho, precision):
    """The input gradient at the pixels ``p = rho + s * j`` (per spatial dimension)."""
    taps, sub_pads = [], []
    for d, (n, (lo, _), s, r0) in enumerate(zip(in_hw, pads, strides, rho, strict=True)):
        r = (r0 + lo) % s  # the kernel taps a with a % s == r reach these pixels
        t = len(range(r, kernel.shape[d], s))
        m0 = (r0 + lo - r) // s  # output row of the first such pixel's last tap
        count = n // s
        taps.append(slice(r, None, s))
        sub_pads.append((t - 1 - m0, m0 + count - g.shape[1 + d]))
    sub = kernel[taps[0], taps[1]]
    if 0 in sub.shape[:2]:  # no tap reaches this phase (e.g. a 1x1 kernel's odd pixels)
        return jnp.zeros(
            (g.shape[0], in_hw[0] // strides[0], in_hw[1] // strides[1], kernel.shape[2]), g.dtype
        )
    sub = jnp.flip(sub, (0, 1)).transpose(0, 1, 3, 2)  # [ty, tx, Cout, Cin]
    for d, (lo, hi) in enumerate(sub_pads):
        g = _pad_or_crop(g, 1 + d, lo, hi)
    return lax.conv_general_dilated(
        g, sub, (1, 1), "VALID", dimension_numbers=_NHWC, precision=precision
    )


def _input_grad(g, kernel, in_hw, pads, strides, precision):
    (sy, sx), (h, w) = strides, in_hw
    rows = [
        jnp.stack(
            [_phase(g, kernel, in_hw, pads, strides, (ry, rx), precision) for rx in range(sx)],
            axis=3,
        )
        for ry in range(sy)
    ]
    out = jnp.stack(rows, axis=2)  # [B, h / sy, sy, w / sx, sx, Cin]
    return out.reshape(g.shape[0], h, w, kernel.shape[2])


def _conv(x, kernel, strides, pads, precision):
    return lax.conv_general_dilated(
        x, kernel, strides, pads, dimension_numbers=_NHWC, precision=precision
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def strided_conv(x, kernel, strides, pads, precision=None):
    """NHWC / HWIO convolution with explicit ``pads`` ``((lo, hi), (lo, hi))`` and
    ``strides``; its input gradient is computed by phases (module docstring).

    Requires :func:`phase_decomposable` of the input's spatial shape.
    """
    return _conv(x, kernel, strides, pads, precision)


def _fwd(x, kernel, strides, pads, precision):
    return _conv(x, kernel, strides, pads, precision), (x, kernel)


def _bwd(strides, pads, precision, res, g):
    x, kernel = res
    _, kernel_vjp = jax.vjp(lambda k: _conv(x, k, strides, pads, precision), kernel)
    dx = _input_grad(g, kernel, x.shape[1:3], pads, strides, precision)
    return dx.astype(x.dtype), kernel_vjp(g)[0]


strided_conv.defvjp(_fwd, _bwd)
