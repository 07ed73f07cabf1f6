"""Which library runs a 3x3 convolution under the step's XLA:CPU options, depending on the
element-wise operation that follows it, and how long each takes.

    PYTHONPATH=. python experiments/bench/conv_epilogue.py [--batch 128] [--reps 15]

``ssl_jax.train.xla_cpu`` keeps YNNPACK for reductions and element-wise fusions only, so
convolutions run on Eigen. But when an element-wise operation that YNNPACK supports (an
addition, a multiplication, ``sign``) consumes a convolution, YNNPACK's element-wise fusion
takes the convolution in, and YNNPACK runs it. In a ResNet's backward pass that happens to
the input gradient of every block whose input also feeds an identity shortcut (autodiff
adds the two cotangents). A ``select`` (``jnp.where``, the ReLU mask) is not a YNNPACK
operation, so a convolution that feeds one stays on Eigen.

For each ResNet-18 CIFAR stage shape (batch ``--batch``: both views of 64 images) this
times, interleaved, a SAME 3x3 convolution alone and followed by each epilogue of
:data:`EPILOGUES`, and reports which library ran the convolution.

``--prologue`` times the other side of the convolution instead: ``BatchNorm(relu=True)``
in training mode without autodiff (a momentum target's forward pass), then the
convolution, with the module's select ReLU and with the ``max`` ReLU it had before
(``baselines.maximum_relu_without_autodiff``). YNNPACK takes a ``max`` in as the
convolution's prologue, and then runs the convolution.

    PYTHONPATH=. python experiments/bench/conv_epilogue.py --prologue
"""

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax
import jax.numpy as jnp
from jax import lax

from experiments.bench import baselines, profile_step, timing
from ssl_jax.models.batch_norm import BatchNorm
from ssl_jax.train import xla_cpu

# ResNet-18 CIFAR stages: (spatial size, channels).
STAGES = ((32, 64), (16, 128), (8, 256), (4, 512))

EPILOGUES = {
    "none": lambda c, r: c,
    "add": lambda c, r: c + r,
    "relu_mask": lambda c, r: jnp.where(r > 0, c, 0),
    "sign_mask": lambda c, r: c * jnp.sign(r),
}


def conv3x3(x: jax.Array, w: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def engine(hlo: str) -> str:
    """``'YNNPACK'`` if the compiled module's convolution sits inside a YNNPACK fusion,
    ``'Eigen'`` if it is an instruction of its own or in an XLA fusion."""
    comps = profile_step.computations(hlo)
    for line in hlo.splitlines():
        called = re.search(r"calls=%([\w.\-]+)", line)
        if called and "__ynn_fusion" in line and " convolution(" in comps.get(called[1], ""):
            return "YNNPACK"
    return "Eigen"


def measure(batch: int, size: int, channels: int, reps: int) -> dict:
    """``{epilogue: {'engine', 'median_ms'}}`` for one shape, interleaved."""
    k = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k[0], (batch, size, size, channels))
    w = jax.random.normal(k[1], (3, 3, channels, channels)) * (9 * channels) ** -0.5
    r = jax.random.normal(k[2], (batch, size, size, channels))
    compiled = {}
    for name, epilogue in EPILOGUES.items():
        fn = jax.jit(lambda x, w, r, e=epilogue: e(conv3x3(x, w), r))
        compiled[name] = fn.lower(x, w, r).compile(xla_cpu.CPU_STEP_OPTIONS)
    return _timed(compiled, (x, w, r), reps)


def _timed(compiled: dict, args: tuple, reps: int) -> dict:
    """``{name: {'engine', 'median_ms'}}`` of compiled functions of ``args``, interleaved."""
    t = timing.interleave(
        {n: lambda c=c: c(*args).block_until_ready() for n, c in compiled.items()}, reps=reps
    )
    return {
        n: dict(engine=engine(c.as_text()), median_ms=1e3 * t[n]["median_s"])
        for n, c in compiled.items()
    }


def measure_prologue(batch: int, size: int, channels: int, reps: int) -> dict:
    """``{'none' | 'bn_relu_select' | 'bn_relu_max': {'engine', 'median_ms'}}``: the
    convolution alone and after a BN-ReLU without autodiff, interleaved."""
    k = jax.random.split(jax.random.key(0), 2)
    x = jax.random.normal(k[0], (batch, size, size, channels))
    w = jax.random.normal(k[1], (3, 3, channels, channels)) * (9 * channels) ** -0.5
    bn = BatchNorm(relu=True)
    v = bn.init(jax.random.key(1), x)

    def bn_relu_conv(v, x, w):
        return conv3x3(bn.apply(v, x, mutable=["batch_stats"])[0], w)

    def compile_(fn):
        return jax.jit(fn).lower(v, x, w).compile(xla_cpu.CPU_STEP_OPTIONS)

    compiled = {"none": compile_(lambda v, x, w: conv3x3(x, w))}
    compiled["bn_relu_select"] = compile_(bn_relu_conv)
    with baselines.maximum_relu_without_autodiff():
        # A new function object: jit's trace cache would hand back the select's trace.
        compiled["bn_relu_max"] = compile_(lambda v, x, w: bn_relu_conv(v, x, w))
    return _timed(compiled, (v, x, w), reps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--prologue", action="store_true", help="BN-ReLU before the convolution")
    a = p.parse_args()
    fn = measure_prologue if a.prologue else measure
    rows = [dict(batch=a.batch, size=s, channels=c, **fn(a.batch, s, c, a.reps)) for s, c in STAGES]
    names = [n for n in rows[0] if n not in ("batch", "size", "channels")]
    print(json.dumps(rows, indent=1))
    print("| map | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for row in rows:
        cells = [f"{row[n]['median_ms']:.1f} ms ({row[n]['engine']})" for n in names]
        print(
            f"| {row['batch']}x{row['size']}x{row['size']}x{row['channels']} | "
            + " | ".join(cells)
            + " |"
        )


if __name__ == "__main__":
    main()
