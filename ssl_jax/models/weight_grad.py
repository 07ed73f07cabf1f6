"""Keeps the weight gradient of each use of a shared convolution kernel a convolution of its
own, out of XLA:CPU's YNNPACK element-wise fusions.

When one kernel is applied to inputs of two sizes (SwAV's and DINO's multi-crop: the
encoder runs once per resolution group), autodiff sums the two weight gradients with an
``add``. XLA:CPU's YNNPACK element-wise fusion then takes both weight-gradient
convolutions into the fusion of that ``add`` and runs them through YNNPACK, whose
weight-gradient convolution is ~3x slower than XLA's Eigen one (the reason
``ssl_jax.train.xla_cpu`` keeps convolutions out of YNNPACK). An optimization barrier on
each use's kernel cotangent keeps the two convolutions outside: in the CIFAR ResNet-18 step
of SwAV's 2x32 + 6x16 multi-crop, 12 of the 15 fused weight-gradient pairs went back to
Eigen and the step at batch 64 went from 7.00 s to 4.66 s on 2 cores (development
measurement, interleaved; ``experiments/bench``'s ``weight_grad`` before/after times
it); a single-size step (SimCLR) is unchanged. Values are unchanged: the barrier is an
identity.
"""

import jax
from jax import lax


@jax.custom_vjp
def separate_weight_gradient(kernel: jax.Array) -> jax.Array:
    """Identity on ``kernel``; its cotangent passes an optimization barrier (see module)."""
    return kernel


def _fwd(kernel):
    return kernel, None


def _bwd(_, g):
    # The barrier only stops fusion across it: the gradient is g itself.
    return (lax.optimization_barrier(g),)


separate_weight_gradient.defvjp(_fwd, _bwd)
