"""Convolution of a feature map smaller than the kernel as one matrix product over the map.

When the input map has fewer pixels than the kernel has taps (SwAV's 16-px crops reach
stage 4 of a CIFAR ResNet-18 at 2x2, under 3x3 kernels), im2col multiplies mostly
padding: each of the 4 output pixels gathers 9 taps of which 5 fall outside the map, so
the product does 9 / 4 = 2.25 times the useful work, and the patches (and, backward, their
scatter-add) are copies as large as the product's operand. Flattening the whole map
instead, the convolution is ``x.reshape(B, h * w * Cin) @ M`` with the map matrix
``M[(q, c), (p, o)] = kernel[tap(q, p), c, o]`` (zero where input pixel ``q`` does not
reach output pixel ``p``): ``h * w * Cin x oh * ow * Cout``, only products that the
convolution has, and no copies of the activations (the reshape is free). The backward
pass is two products of the same size: ``dx = g @ M^T`` and ``dM = x^T g``, whose blocks
sum into the kernel's gradient tap by tap.

The matrix is ``h * w / (kh * kw)`` times the size of the im2col product's operand, so
:func:`pays` takes this form only where the map has fewer pixels than the kernel has taps.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def pays(in_hw, kernel_hw) -> bool:
    """Whether the map matrix does less work than im2col: fewer input pixels than taps."""
    return int(np.prod(in_hw)) < int(np.prod(kernel_hw))


def _taps(in_hw, out_hw, kernel_hw, strides, pads) -> np.ndarray:
    """``[h * w, oh * ow]``: the flat kernel tap joining input pixel q to output pixel p,
    -1 where none does."""
    (h, w), (oh, ow), (kh, kw), (sh, sw) = in_hw, out_hw, kernel_hw, strides
    qi, qj, pi, pj = np.meshgrid(range(h), range(w), range(oh), range(ow), indexing="ij")
    ti, tj = qi - pi * sh + pads[0][0], qj - pj * sw + pads[1][0]
    valid = (ti >= 0) & (ti < kh) & (tj >= 0) & (tj < kw)
    return np.where(valid, ti * kw + tj, -1).reshape(h * w, oh * ow)


def _matrix(kernel, taps):
    """The map matrix ``[h * w * Cin, oh * ow * Cout]`` (module docstring)."""
    cin, cout = kernel.shape[2:]
    flat = kernel.reshape(-1, cin, cout)
    zero = jnp.zeros((cin, cout), kernel.dtype)
    rows = [jnp.stack([flat[t] if t >= 0 else zero for t in row], axis=1) for row in taps]
    return jnp.stack(rows).reshape(taps.shape[0] * cin, taps.shape[1] * cout)


def _kernel_grad(dm, taps, kernel_shape):
    """Sums the blocks of the map matrix's gradient into the kernel's, tap by tap."""
    kh, kw, cin, cout = kernel_shape
    blocks = dm.reshape(taps.shape[0], cin, taps.shape[1], cout)
    per_tap = []
    for t in range(kh * kw):
        qs, ps = np.nonzero(taps == t)
        terms = [blocks[q, :, p, :] for q, p in zip(qs, ps, strict=True)]
        per_tap.append(sum(terms[1:], terms[0]) if terms else jnp.zeros((cin, cout), dm.dtype))
    return jnp.stack(per_tap).reshape(kernel_shape)


def output_hw(in_hw, kernel_hw, strides, pads) -> tuple[int, ...]:
    """The output's spatial sizes for explicit ``pads`` ``((lo, hi), (lo, hi))``."""
    sizes = zip(in_hw, kernel_hw, strides, pads, strict=True)
    return tuple((n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in sizes)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def map_matrix_conv(x, kernel, strides, pads, precision=None):
    """NHWC / HWIO convolution with explicit ``pads`` ``((lo, hi), (lo, hi))`` and
    ``strides``, as one matrix product over the whole map (module docstring)."""
    return _fwd(x, kernel, strides, pads, precision)[0]


def _fwd(x, kernel, strides, pads, precision):
    b, in_hw, cout = x.shape[0], x.shape[1:3], kernel.shape[3]
    out_hw = output_hw(in_hw, kernel.shape[:2], strides, pads)
    m = _matrix(kernel, _taps(in_hw, out_hw, kernel.shape[:2], strides, pads))
    y = jnp.matmul(x.reshape(b, -1), m, precision=precision)
    return y.reshape(b, *out_hw, cout), (x, kernel, m)


def _bwd(strides, pads, precision, res, g):
    x, kernel, m = res
    b, in_hw = x.shape[0], x.shape[1:3]
    taps = _taps(in_hw, g.shape[1:3], kernel.shape[:2], strides, pads)
    g = g.reshape(b, -1)
    dx = jnp.matmul(g, m.T, precision=precision).reshape(x.shape)
    dm = jnp.matmul(x.reshape(b, -1).T, g, precision=precision)
    return dx.astype(x.dtype), _kernel_grad(dm, taps, kernel.shape).astype(kernel.dtype)


map_matrix_conv.defvjp(_fwd, _bwd)
