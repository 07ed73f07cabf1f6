"""Where the time of one ssl_jax CPU train step goes, by kind of operation, for the tuned
step and the XLA-defaults one (the evidence behind ``ssl_jax.train.xla_cpu``).

    PYTHONPATH=. python experiments/bench/profile_step.py --case simclr_resnet18 --batch 64

Traces ``--steps`` executions with ``jax.profiler``, reads the per-thunk events of XLA's
CPU runtime back (``jax.profiler.ProfileData``) and sums their durations by the kind of the
HLO instruction each thunk runs: convolution forward / input gradient / weight gradient
(told apart by the op's JAX name and its output shape), dot, layout copy (transposes
XLA inserts, often with element-wise work fused in), reduction, other element-wise. On a
busy machine durations include time the threads were preempted; compare the two columns
of one run, not absolute values across runs.

A thunk's event covers its run time only when the thunk runs synchronously. XLA:CPU runs
Eigen convolutions (the tuned step's) asynchronously: the event ends when the work is handed
to Eigen's thread pool, well under a millisecond, and the convolution's consumers start
tens of milliseconds later. Their rows then show launch time, not run time; the table's
last row, the step's wall time under the profiler, is what every kind adds up to.
"""

import argparse
import collections
import glob
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax

from experiments.bench import cases, jax_side

_INSTR = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+) ([\w\-]+)\((.*)$", re.M)
_COMP = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) \(.*?\{\n(.*?)^\}", re.S | re.M)
_KERNEL_SPATIAL = {(1, 1), (3, 3), (5, 5), (7, 7)}


def _conv_kind(body: str) -> str:
    conv = next((m for m in _INSTR.finditer(body) if m.group(3) == "convolution"), None)
    if conv is None:
        return ""
    shape = re.search(r"\[([\d,]*)\]", conv.group(2))
    dims = [int(d) for d in shape.group(1).split(",") if d] if shape else []
    if "transpose(jvp" not in body and "jvp(" in body:
        return "conv forward"
    if len(dims) == 4 and tuple(dims[1:3]) in _KERNEL_SPATIAL:
        return "conv weight gradient"
    return "conv input gradient"


def computations(hlo_text: str) -> dict[str, str]:
    """Computation name -> body text, for every computation of an HLO module's text."""
    return {m.group(1): m.group(2) for m in _COMP.finditer(hlo_text)}


def categorize(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> kind, for every instruction of the optimised module."""
    comps = computations(hlo_text)
    kinds = {}
    for m in _INSTR.finditer(hlo_text):
        name, op, rest = m.group(1), m.group(3), m.group(4)
        called = re.search(r"calls=%([\w.\-]+)", rest)
        body = comps.get(called.group(1), "") if called else m.group(0)
        kind = _conv_kind(body)
        if not kind:
            if re.search(r"\bdot\(", body):
                kind = "dot"
            elif re.search(r"\b(transpose|copy)\(", body) and "transpose" in name:
                kind = "layout copy (transpose)"
            elif re.search(r"\breduce(-window)?\(", body):
                kind = "reduction"
            elif op in (
                "fusion",
                "add",
                "multiply",
                "select",
                "maximum",
                "copy",
                "pad",
                "slice",
                "concatenate",
                "broadcast",
                "convert",
            ):
                kind = "element-wise / copy"
            else:
                kind = "other"
        kinds[name] = kind
    return kinds


def profile(compiled, run, steps: int) -> dict[str, dict]:
    """Where ``steps`` calls of ``run`` spend their time, from a ``jax.profiler`` trace.

    Returns:
      ``{'by_kind': {kind: ms per step}, 'wall_ms': wall time per step}``. ``by_kind`` sums
      the durations of the thunks' trace events. Thunks that run concurrently overlap, so
      the sum can exceed the wall time. An asynchronous thunk's event ends when its work
      is handed over, so the sum can also fall short of it (module docstring).
    """
    kinds = categorize(compiled.as_text())
    run()
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            t0 = time.perf_counter()
            for _ in range(steps):
                run()
            wall = time.perf_counter() - t0
        data = jax.profiler.ProfileData.from_file(
            glob.glob(f"{d}/**/*.xplane.pb", recursive=True)[0]
        )
    total = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            for ev in line.events:
                if ev.name in kinds:
                    total[kinds[ev.name]] += ev.duration_ns / 1e6 / steps
    return {"by_kind": dict(total.most_common()), "wall_ms": 1e3 * wall / steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", default="simclr_resnet18", choices=[c.name for c in cases.CASES])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=2)
    a = p.parse_args()
    c = cases.get(a.case).config(a.batch)
    views, labels = jax_side.make_views(c)
    out = {}
    for name, tuned in (("tuned", True), ("xla_default", False)):
        jx = jax_side.JaxCase(c, tuned=tuned).setup(views, labels)
        out[name] = profile(jx.compiled, jx.step, a.steps)
    by = {name: r["by_kind"] for name, r in out.items()}
    kinds = sorted(
        set(by["tuned"]) | set(by["xla_default"]), key=lambda k: -by["xla_default"].get(k, 0)
    )
    print("| kind | XLA defaults (ms/step) | tuned (ms/step) |\n|---|---:|---:|")
    for k in kinds:
        print(f"| {k} | {by['xla_default'].get(k, 0):.0f} | {by['tuned'].get(k, 0):.0f} |")
    sums = {name: sum(b.values()) for name, b in by.items()}
    print(f"| sum of traced thunks | {sums['xla_default']:.0f} | {sums['tuned']:.0f} |")
    wall = {name: r["wall_ms"] for name, r in out.items()}
    print(f"| step wall time | {wall['xla_default']:.0f} | {wall['tuned']:.0f} |")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
