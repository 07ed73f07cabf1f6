"""XLA flags of every test process: tests/conftest.py and the workers the tests start.

The tests' models are tiny, so compiling their programs costs far more than running them:
XLA's cheapest backend optimisation (as ``tests/methods/harness.py``'s ``FAST_COMPILE``)
for every program. The library's speed is measured by the benchmarks under
``experiments/``, at XLA's defaults.
"""

FAST_COMPILE_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
)


def xla_flags(num_devices: int) -> str:
    """``XLA_FLAGS`` for a test process with ``num_devices`` fake CPU devices."""
    return " ".join((f"--xla_force_host_platform_device_count={num_devices}", *FAST_COMPILE_FLAGS))
