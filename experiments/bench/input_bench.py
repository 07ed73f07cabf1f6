"""Input pipeline against the train step: augmentation images/s on the host and device
paths (``experiments/bench_input.py``'s measurements, reused), the colour-jitter change
before/after, and the step with the augmentation inside it (the library's default).

    PYTHONPATH=. python experiments/bench/input_bench.py [--quick]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax
import numpy as np

from experiments import bench_input
from experiments.bench import baselines, cases, jax_side, timing
from ssl_jax import augment

RECIPES = (("simclr_cifar", 0, "2"), ("swav_cifar", 6, "2+6"))


def pipeline_rates(data_dir: str | None, quick: bool) -> list[dict]:
    """Host decode, host crops, device recipe and device photometric rows, CIFAR-10 32 px."""
    return bench_input.bench_cifar(data_dir, quick)


def jitter_before_after(batch: int, reps: int) -> list[dict]:
    """The whole device recipe with the current colour jitter and the all-ops one."""
    rows = []
    images = np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    key = jax.random.key(0)
    for recipe, n_local, label in RECIPES:

        def make(k, x, r=recipe, n=n_local):
            return augment.make_views(r, k, x, num_local_crops=n)

        after = jax.jit(make).lower(key, images).compile()
        with baselines.old_color_jitter():
            # A fresh function object: jit's trace cache would hand back the one above.
            before = jax.jit(lambda k, x: make(k, x)).lower(key, images).compile()
        for a, b in zip(after(key, images), before(key, images), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # same views
        t = timing.interleave(
            {
                "before (all 4 ops per slot)": lambda f=before: jax.block_until_ready(
                    f(key, images)
                ),
                "after (2 forms per slot)": lambda f=after: jax.block_until_ready(f(key, images)),
            },
            reps=reps,
        )
        for name, v in t.items():
            rows.append(
                dict(
                    recipe=recipe,
                    views=label,
                    variant=name,
                    batch=batch,
                    median_s=v["median_s"],
                    images_per_s=batch / v["median_s"],
                )
            )
    return rows


def step_with_device_views(case: str, batch: int, reps: int) -> dict:
    """The library's default step (uint8 in, augmentation inside) against given views."""
    c = cases.get(case).config(batch)
    views, labels = jax_side.make_views(c)
    given = jax_side.JaxCase(c, views="given").setup(views, labels)
    device = jax_side.JaxCase(c, views="device").setup(None, labels)
    t = timing.interleave({"given views": given.step, "device views": device.step}, reps=reps)
    out = {k: v["median_s"] for k, v in t.items()}
    return dict(
        case=case,
        batch=batch,
        given_views_step_s=out["given views"],
        device_views_step_s=out["device views"],
        augmentation_share=1 - out["given views"] / out["device views"],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default=None)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    reps = 3 if a.quick else 9
    out = {"jitter": jitter_before_after(64 if a.quick else 256, reps)}
    if not a.quick:
        out["pipeline"] = pipeline_rates(a.data_dir, a.quick)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
