"""Runs one measurement in a fresh process and prints its JSON (``run.py`` starts these).

    PYTHONPATH=. python experiments/bench/worker.py KIND '{"arg": value, ...}'

One process per measurement keeps allocators, compilation caches and the memory probe's
``mallopt`` setting (``timing.peak_memory``) from leaking into the next measurement.
"""

import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.bench import (
    cases,
    eval_bench,
    input_bench,
    jax_side,
    profile_step,
    scaling,
    step_bench,
)


def step(case: str, batch: int, reps: int, before: bool = False) -> dict:
    _, details = step_bench.measure(cases.get(case), batch, reps=reps, before=before)
    return details


def profile(case: str, batch: int, steps: int = 2) -> dict:
    c = cases.get(case).config(batch)
    views, labels = jax_side.make_views(c)
    out = {}
    for name, tuned in (("tuned", True), ("xla_default", False)):
        jx = jax_side.JaxCase(c, tuned=tuned).setup(views, labels)
        out[name] = profile_step.profile(jx.compiled, jx.step, steps)
    return dict(
        case=case,
        batch=batch,
        ms_per_step={name: r["by_kind"] for name, r in out.items()},
        wall_ms={name: r["wall_ms"] for name, r in out.items()},
    )


KINDS = {
    "profile": profile,
    "step": step,
    "small_map": functools.partial(step_bench.before_after, "small_map"),
    "max_pool": functools.partial(step_bench.before_after, "max_pool"),
    "weight_grad": functools.partial(step_bench.before_after, "weight_grad"),
    "batch_norm": functools.partial(step_bench.before_after, "batch_norm"),
    "relu_after_pool": functools.partial(step_bench.before_after, "relu_after_pool"),
    "pool_selects": functools.partial(step_bench.before_after, "pool_selects"),
    "channel_zero": functools.partial(step_bench.before_after, "channel_zero"),
    "steps_per_call": functools.partial(step_bench.before_after, "steps_per_call"),
    "xla_options": functools.partial(step_bench.before_after, "xla_options"),
    "ynn_dots": functools.partial(step_bench.before_after, "ynn_dots"),
    "swav_codes_cond": functools.partial(step_bench.before_after, "swav_codes_cond"),
    "strided_conv": functools.partial(step_bench.before_after, "strided_conv"),
    "map_matrix": functools.partial(step_bench.before_after, "map_matrix"),
    "select_relu": functools.partial(step_bench.before_after, "select_relu"),
    "eval_options": eval_bench.features_before_after,
    "devices": scaling.device_point,
    "embedding": scaling.embedding_point,
    "jitter": input_bench.jitter_before_after,
    "device_views": input_bench.step_with_device_views,
    "pipeline": input_bench.pipeline_rates,
}


def main() -> None:
    kind, args = sys.argv[1], json.loads(sys.argv[2])
    print("RESULT " + json.dumps(KINDS[kind](**args), default=float))


if __name__ == "__main__":
    main()
