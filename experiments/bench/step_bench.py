"""Train-step time of ssl_jax against its PyTorch peer, one case, interleaved.

    PYTHONPATH=. python experiments/bench/step_bench.py --case simclr_resnet18 --batch 64

Contenders, each timed once per round with the order rotating (medians over ``--reps``
rounds after ``--warmup`` calls each):

- ``jax``: ssl_jax's step as the training loop compiles it (``jit_step``, tuned options,
  the loop's steps per call: on CPU 4 steps per compiled call, and 4 PyTorch steps per
  timed call to match; all times are per step);
- ``jax_xla_default`` (only with ``before=True``, ``--xla_default``): the same step
  compiled with XLA's default options. ``run.py`` measures change 1 once, as the
  ``xla_options`` before/after, instead of in every row: at 4 steps per call this
  contender took 3-5x ssl_jax's time, about as long as the other three together;
- ``torch``, ``torch_cl``: the PyTorch peer in channels-first and channels-last memory.

Both frameworks get the same augmented views and use every core this process may run on
(``torch.set_num_threads``; XLA's CPU client sizes its pool the same way). Images/s counts
each source image once (its views are not counted again). ``cpu_per_step`` splits each
contender's CPU time per step into user and kernel time and counts its minor page faults
(``timing.interleave``): where wall time goes that the kernels' FLOPs do not explain.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

from experiments.bench import baselines, cases, jax_side, timing
from experiments.bench.torch_ref.methods import Peer


def threads() -> int:
    return len(os.sched_getaffinity(0))


def _rounds(reps: int, k: int) -> int:
    """Timed rounds when each call runs ``k`` steps: ``reps`` counts steps, and calls of k
    steps average k steps each, so fewer of them do (at least 3)."""
    return max(3, math.ceil(reps / k)) if k > 1 else reps


def measure(
    case: cases.Case,
    batch: int,
    *,
    reps: int,
    warmup: int = 1,
    before: bool = False,
    measure_memory: bool = True,
) -> tuple[dict, dict]:
    """Returns ``(record, details)``: the ``results.json`` record and everything else."""
    torch.set_num_threads(threads())
    c = case.config(batch)
    views, labels = jax_side.make_views(c)
    # Every timed call runs k steps of each contender: ssl_jax one call of k steps (as the
    # training loop compiles it), PyTorch k calls.
    k = jax_side.loop_steps_per_call(c)
    fns, compiled = {}, {}
    jx = jax_side.JaxCase(c, steps_per_call=k).setup(views, labels)
    fns["jax"], compiled["jax"] = jx.step, jx
    if before:
        jb = jax_side.JaxCase(c, tuned=False, steps_per_call=k).setup(views, labels)
        fns["jax_xla_default"], compiled["jax_xla_default"] = jb.step, jb
    for name, cl in (("torch", False), ("torch_cl", True)):
        peer = Peer(c, channels_last=cl, num_train_examples=jax_side.NUM_TRAIN_EXAMPLES)
        tv, tl = peer.to_torch(views), torch.from_numpy(labels).long()
        fns[name] = lambda peer=peer, tv=tv, tl=tl: [peer.step(tv, tl) for _ in range(k)]
    rounds = _rounds(reps, k)
    load_before = timing.load_average()
    t = timing.interleave(fns, reps=rounds, warmup=warmup)
    t = {name: timing.per_step(v, k) for name, v in t.items()}
    load_after = timing.load_average()
    memory = timing.peak_memory(fns) if measure_memory else {}
    best_torch = min(("torch", "torch_cl"), key=lambda k: t[k]["median_s"])
    jax_s, torch_s = t["jax"]["median_s"], t[best_torch]["median_s"]
    record = dict(
        case=case.name, batch=batch, jax_step_s=jax_s, torch_step_s=torch_s, ratio=jax_s / torch_s
    )
    details = dict(
        record,
        torch_best=best_torch,
        images_per_s={k: batch / v["median_s"] for k, v in t.items()},
        cpu_per_step={
            k: {m: v[m] for m in ("user_s", "sys_s", "minor_faults")} for k, v in t.items()
        },
        timings=t,
        peak_added_mib=memory,
        compile_s={k: v.compile_s for k, v in compiled.items()},
        xla_memory={k: v.memory_analysis() for k, v in compiled.items()},
        xla_flops=jx.flops(),
        threads=threads(),
        steps_per_call=k,
        reps=reps,
        rounds=rounds,
        load_average_before=load_before,
        load_average_after=load_after,
    )
    return record, details


# Performance changes to the encoders, each with a context manager that restores the
# code before it (``baselines.py``).
BEFORE = {
    "small_map": baselines.xla_small_map_conv,
    "max_pool": baselines.flax_max_pool,
    "weight_grad": baselines.fused_weight_grads,
    "batch_norm": baselines.flax_batch_norm,
    "relu_after_pool": baselines.relu_before_pool,
    "pool_selects": baselines.maximum_pool,
    "channel_zero": baselines.constant_zeros,
    "ynn_dots": baselines.eigen_dots,
    "swav_codes_cond": baselines.swav_whole_loss_in_cond,
    "strided_conv": baselines.xla_transposed_conv,
    "map_matrix": baselines.im2col_small_maps,
    "select_relu": baselines.maximum_relu_without_autodiff,
}
# Changes timed at the training loop's steps per call (the others at one step per call).
LOOP_K = (
    "xla_options",
    "steps_per_call",
    "ynn_dots",
    "swav_codes_cond",
    "strided_conv",
    "map_matrix",
    "select_relu",
)


def before_after(change: str, case: str, batch: int, reps: int) -> dict:
    """ssl_jax's step with the current code and with ``change`` undone, interleaved.

    One step per call on both sides, except for ``steps_per_call``: one step per call
    against the training loop's steps per call (each timed call runs that many steps on
    both sides; the times are per step), and the compiler-option changes ``xla_options``
    (XLA's default options against ssl_jax's, ``ssl_jax.train.xla_cpu``) and ``ynn_dots``
    (dots in Eigen against YNNPACK), both sides at the loop's steps per call, in
    ``max(3, ceil(reps / k))`` rounds as ``measure`` times its rows."""
    c = cases.get(case).config(batch)
    views, labels = jax_side.make_views(c)
    k = jax_side.loop_steps_per_call(c) if change in LOOP_K else 1
    if change == "steps_per_call" and k == 1:
        raise ValueError("the training loop runs one step per call on this backend")
    after = jax_side.JaxCase(c, steps_per_call=k).setup(views, labels)
    if change == "xla_options":
        before = jax_side.JaxCase(c, tuned=False, steps_per_call=k).setup(views, labels)
        fns = {"before": before.step, "after": after.step}
        reps = _rounds(reps, k)
    elif change == "steps_per_call":
        before = jax_side.JaxCase(c).setup(views, labels)
        fns = {"before": lambda: before.steps(k), "after": after.step}
    else:
        with BEFORE[change]():
            before = jax_side.JaxCase(c, steps_per_call=k).setup(views, labels)
        fns = {"before": before.step, "after": after.step}
        reps = _rounds(reps, k)
    load_before = timing.load_average()
    t = timing.interleave(fns, reps=reps)
    t = {name: timing.per_step(v, k) for name, v in t.items()}
    return dict(
        case=case,
        batch=batch,
        before_s=t["before"]["median_s"],
        after_s=t["after"]["median_s"],
        timings=t,
        compile_s={"before": before.compile_s, "after": after.compile_s},
        xla_flops={"before": before.flops(), "after": after.flops()},
        xla_temp_mib={
            "before": before.memory_analysis()["xla_temp_mib"],
            "after": after.memory_analysis()["xla_temp_mib"],
        },
        steps_per_call={"before": before.steps_per_call, "after": after.steps_per_call},
        load_average_before=load_before,
        load_average_after=timing.load_average(),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", required=True, choices=[c.name for c in cases.CASES])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--xla_default", action="store_true", help="add the XLA-defaults contender")
    p.add_argument("--no_before", action="store_true", help="the default (older commands)")
    a = p.parse_args()
    _, details = measure(cases.get(a.case), a.batch, reps=a.reps, before=a.xla_default)
    details.pop("timings")
    print(json.dumps(details, indent=1, default=float))


if __name__ == "__main__":
    main()
