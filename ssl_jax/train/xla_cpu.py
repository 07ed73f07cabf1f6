"""XLA:CPU compiler options for the train step (and feature extraction), and how they were
chosen.

jaxlib 0.10 hands convolutions, dots and reductions to YNNPACK library fusions by default.
For the weight gradient of a convolution (a "convolution" whose window is the whole feature
map and whose contraction runs over the batch) that path is about 3x slower than XLA's
Eigen convolution, and the convolutions forward and through the input are no faster (2
cores, ResNet-18 CIFAR shapes; ``experiments/bench/README.md``). YNNPACK's reductions,
element-wise fusions and dots, on the other hand, are faster than XLA's own loops and
Eigen's matrix products: BatchNorm is made of the first two, and the projection heads'
dots (a 2048 x 2048 Barlow Twins projector, forward and backward) run at about 93 GFLOP/s
in YNNPACK against 53 in Eigen. So the step keeps YNNPACK for those three and lets Eigen
do convolutions. On a CIFAR ResNet-18 training step this makes the step several times
faster than XLA's defaults (change 1 in ``experiments/bench/README.md``). The dot type
moves only dots; no convolution goes with them (``tests/train/test_xla_cpu.py``).

Only ``xla_cpu_*`` debug options are set, per compiled function (``jax.jit``'s
``compiler_options``), never through the process-wide ``XLA_FLAGS``; other backends get
none. If the installed jaxlib does not know an option, the step compiles without them.
"""

import functools
import logging
from collections.abc import Sequence

import jax
import jax.numpy as jnp

log = logging.getLogger(__name__)

# YNNPACK keeps reductions, element-wise fusions and dots; convolutions go to Eigen.
CPU_STEP_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": (
        "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_DOT"
    ),
}


@functools.cache
def _supported(items: tuple[tuple[str, str], ...]) -> bool:
    """Whether this jaxlib accepts the options (compiles a one-op function once)."""
    try:
        cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
        arg = jax.ShapeDtypeStruct((2,), jnp.float32, sharding=cpu)
        jax.jit(lambda x: x + 1).lower(arg).compile(dict(items))
    except Exception as e:  # jaxlib raises its own runtime error type for unknown options
        log.warning("XLA:CPU step options %s not accepted by this jaxlib (%s)", dict(items), e)
        return False
    return True


def step_compiler_options(devices: Sequence[jax.Device]) -> dict[str, str] | None:
    """The compiler options for a train step (or a feature extraction) on ``devices``.

    Args:
      devices: the devices of the step's mesh.

    Returns:
      :data:`CPU_STEP_OPTIONS` when every device is a CPU and the installed jaxlib accepts
      them, else None (no options: XLA's defaults).
    """
    if not devices or any(d.platform != "cpu" for d in devices):
        return None
    items = tuple(sorted(CPU_STEP_OPTIONS.items()))
    return dict(items) if _supported(items) else None
