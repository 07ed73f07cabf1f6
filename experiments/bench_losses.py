"""Forward+backward cost of every loss exported by ``ssl_jax.losses``, jitted, on this machine.

    PYTHONPATH=. python experiments/bench_losses.py [--quick] [--only LOSS,...] [--out NAME]

Every exported ``*_loss`` function must have a case below; one without is listed as "not
benchmarked" in the output, never silently dropped. For each case the script compiles
``jax.value_and_grad`` of the loss (w.r.t. the inputs a method trains through), runs it once
to warm up, then times calls until it has ``--min_runs`` of them and ``--budget_s`` seconds
(or ``--max_runs``), and reports the median. Memory is reported two ways:

- XLA's own accounting of the compiled program (``memory_analysis()``): scratch (``temp``)
  and arguments + outputs; this is what the program needs on any backend of the same kind.
- RSS delta: the highest resident set size sampled every 2 ms during the warm-up and timed
  calls minus the RSS just before them (inputs already live), i.e. what the calls really
  added here. It can read low when memory freed by an earlier case is reused.

Sizes are the papers' where a CPU allows: batch 4096 at dims 128 and 256; Barlow Twins and
VICReg also at 8192; SwAV with 3000 prototypes and 2+6
crops; DINO with 65536 output dims and 2+8 crops at a smaller batch. Writes
``experiments/results/losses_cpu.{md,json}`` (``--out`` changes the stem).
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax import losses

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 2**20


@dataclasses.dataclass(frozen=True)
class Case:
    """One timed configuration: ``fn(*args) -> (loss, aux)``, differentiated w.r.t. ``diff``."""

    loss: str
    batch: int
    dim: str
    make_args: Callable[[jax.Array], tuple]
    fn: Callable[..., tuple]
    diff: tuple[int, ...]
    note: str = ""


def _normals(key: jax.Array, *shapes) -> list[jax.Array]:
    keys = jax.random.split(key, len(shapes))
    return [jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, shapes, strict=True)]


def _scalar(loss_fn: Callable) -> Callable[..., tuple]:
    return lambda *a: (loss_fn(*a), ())


def _pair(loss_fn: Callable) -> Callable[..., tuple]:
    """For losses that already return ``(loss, aux)``."""
    return loss_fn


def _labels(key: jax.Array, n: int, k: int) -> jax.Array:
    return jax.random.randint(key, (n,), 0, k, jnp.int32)


def build_cases(*, batch: int, dims: tuple[int, ...], big: tuple[int, int], dino_batch: int,
                mae_batch: int, color_batch: int, queue: int) -> list[Case]:  # fmt: skip
    cases = []
    for d in dims:
        b2 = lambda k, d=d: tuple(_normals(k, (batch, d), (batch, d)))
        b4 = lambda k, d=d: tuple(_normals(k, *[(batch, d)] * 4))
        cases += [
            Case("nt_xent_loss", batch, str(d), b2, _scalar(losses.nt_xent_loss), (0, 1)),
            Case(
                "info_nce_loss",
                batch,
                str(d),
                lambda k, d=d: tuple(_normals(k, (batch, d), (batch, d), (queue, d))),
                _scalar(losses.info_nce_loss),
                (0,),
                f"queue {queue}; grad w.r.t. queries only (keys, queue: momentum encoder)",
            ),
            Case(
                "moco_v3_loss",
                batch,
                str(d),
                b4,
                _scalar(losses.moco_v3_loss),
                (0, 1),
                "grad w.r.t. queries (keys: momentum encoder)",
            ),
            Case("byol_loss", batch, str(d), b2, _scalar(losses.byol_loss), (0,)),
            Case(
                "byol_symmetric_loss",
                batch,
                str(d),
                b4,
                _scalar(losses.byol_symmetric_loss),
                (0, 1),
            ),
            Case("simsiam_loss", batch, str(d), b2, _scalar(losses.simsiam_loss), (0,)),
            Case(
                "simsiam_symmetric_loss",
                batch,
                str(d),
                b4,
                _scalar(losses.simsiam_symmetric_loss),
                (0, 1),
            ),
        ]
    for d in (*dims, big[1]):
        n = batch if d != big[1] else big[0]
        b2 = lambda k, d=d, n=n: tuple(_normals(k, (n, d), (n, d)))
        cases += [
            Case("barlow_twins_loss", n, str(d), b2, _pair(losses.barlow_twins_loss), (0, 1)),
            Case("vicreg_loss", n, str(d), b2, _pair(losses.vicreg_loss), (0, 1)),
        ]
    crops = 2 + 6
    cases.append(
        Case(
            "swav_loss",
            batch,
            "K=3000",
            lambda k: (_normals(k, *[(batch, 3000)] * crops),),
            _scalar(lambda s: losses.swav_loss([jnp.tanh(x) for x in s])),
            (0,),
            "2+6 crops of prototype scores; Sinkhorn 3 iterations",
        )
    )
    cases.append(
        Case(
            "dino_loss",
            dino_batch,
            "K=65536",
            lambda k: (
                _normals(k, *[(dino_batch, 65536)] * 10),
                _normals(jax.random.fold_in(k, 1), *[(dino_batch, 65536)] * 2),
                jnp.zeros((65536,)),
            ),
            _scalar(losses.dino_loss),
            (0,),
            "2+8 student crops, 2 teacher crops; grad w.r.t. student",
        )
    )
    cases += [
        Case(
            "rotation_loss",
            batch,
            "4 classes",
            lambda k: (_normals(k, (batch, 4))[0], _labels(k, batch, 4)),
            _pair(losses.rotation_loss),
            (0,),
        ),
        Case(
            "classification_loss",
            batch,
            "8 classes",
            lambda k: (_normals(k, (batch, 8))[0], _labels(k, batch, 8)),
            _scalar(losses.classification_loss),
            (0,),
            "relative patch position",
        ),
        Case(
            "classification_loss",
            batch,
            "1000 classes",
            lambda k: (_normals(k, (batch, 1000))[0], _labels(k, batch, 1000)),
            _scalar(losses.classification_loss),
            (0,),
            "jigsaw, 1000 permutations",
        ),
        Case(
            "colorization_loss",
            color_batch,
            "56x56x313",
            lambda k: (
                *_normals(k, (color_batch, 56, 56, 313), (color_batch, 56, 56, 313)),
                jnp.linspace(0.5, 5.0, 313),
            ),
            _scalar(
                lambda a, t, w: losses.colorization_loss(
                    a, jax.nn.softmax(t, axis=-1), class_weights=w
                )
            ),
            (0,),
            "313 ab bins at 1/4 of 224 px, class-rebalanced",
        ),
        Case(
            "mae_loss",
            mae_batch,
            "196x768",
            lambda k: (
                *_normals(k, (mae_batch, 196, 768), (mae_batch, 196, 768)),
                (jax.random.uniform(k, (mae_batch, 196)) < 0.75).astype(jnp.float32),
            ),
            _scalar(losses.mae_loss),
            (0,),
            "ViT-B/16 at 224 px, 75% masked, norm_pix_loss",
        ),
    ]
    return cases


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _RssSampler:
    """Highest RSS seen by a background thread while the block runs."""

    def __enter__(self):
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def run_case(case: Case, *, min_runs: int, max_runs: int, budget_s: float, seed: int) -> dict:
    args = jax.block_until_ready(case.make_args(jax.random.key(seed)))
    step = jax.jit(jax.value_and_grad(case.fn, argnums=case.diff, has_aux=True))
    t0 = time.perf_counter()
    compiled = step.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    base = _rss_bytes()
    times = []
    with _RssSampler() as rss:
        # The warm-up call is sampled too: XLA's allocator keeps buffers for later calls.
        (value, _), _ = jax.block_until_ready(compiled(*args))
        while len(times) < max_runs and (len(times) < min_runs or sum(times) < budget_s):
            t = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            times.append(time.perf_counter() - t)
    return dict(
        loss=case.loss,
        batch=case.batch,
        dim=case.dim,
        diff_args=list(case.diff),
        note=case.note,
        median_ms=1e3 * statistics.median(times),
        min_ms=1e3 * min(times),
        runs=len(times),
        compile_s=compile_s,
        xla_temp_mib=mem.temp_size_in_bytes / MIB,
        xla_args_out_mib=(mem.argument_size_in_bytes + mem.output_size_in_bytes) / MIB,
        rss_delta_mib=(rss.peak - base) / MIB,
        loss_value=float(value),
        finite=bool(np.isfinite(float(value))),
    )


def _machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import jaxlib

    return dict(
        cpu=cpu,
        cpus=os.cpu_count(),
        memory_gib=round(mem_gib, 1),
        load_average_at_start=[round(x, 2) for x in os.getloadavg()],
        devices=[str(d) for d in jax.devices()],
        python=platform.python_version(),
        jax=jax.__version__,
        jaxlib=jaxlib.__version__,
        numpy=np.__version__,
    )


def _ms(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _markdown(meta: dict, rows: list[dict], skipped: dict[str, str]) -> str:
    m = meta["machine"]
    lines = [
        "# Loss forward+backward cost (CPU)",
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}` ({meta['total_s']:.0f} s in all)",
        f"- machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB RAM, load average "
        f"at start {', '.join(map(str, m['load_average_at_start']))} (shared machine: other "
        "jobs ran at the same time, so times are rough upper bounds)",
        f"- JAX devices: {', '.join(m['devices'])}",
        f"- versions: python {m['python']}, jax {m['jax']}, jaxlib {m['jaxlib']}, "
        f"numpy {m['numpy']}",
        "",
        "Each row: `jax.jit(jax.value_and_grad(loss))` on float32 inputs, median of `runs` "
        "timed calls after one warm-up call (compile time separate). `grad` lists the "
        "differentiated arguments. XLA temp / args+out: the compiled program's "
        "`memory_analysis()`. RSS delta: peak resident memory during the warm-up and timed "
        "calls minus the memory just before (inputs already allocated); it can read low when "
        "memory freed by an earlier row is reused.",
        "",
        "| loss | batch | dim | grad | median ms | runs | compile s | XLA temp MiB "
        "| XLA args+out MiB | RSS delta MiB | note |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['loss']} | {r['batch']} | {r['dim']} | {r['diff_args']} | "
            f"{_ms(r['median_ms'])} | {r['runs']} | {r['compile_s']:.1f} | "
            f"{r['xla_temp_mib']:,.0f} | {r['xla_args_out_mib']:,.0f} | "
            f"{r['rss_delta_mib']:,.0f} | {r['note']} |"
        )
    lines += ["", "Exported names that are not losses, not timed here (parts of the losses "
              "above or state updates):", ""]  # fmt: skip
    lines += [f"- `{name}`: {why}" for name, why in sorted(skipped.items())]
    return "\n".join(lines) + "\n"


HELPERS = {
    "nearest_neighbour": "NNCLR support-set lookup (no gradient)",
    "queue_update": "MoCo queue state update (no gradient)",
    "dino_center_update": "DINO center EMA (no gradient)",
    "sinkhorn_knopp": "inside swav_loss (timed there)",
    "patchify": "reshape for mae_loss targets",
    "unpatchify": "inverse reshape",
    "rotate_images": "data op for rotation_loss",
    "soft_encode_ab": "target encoding for colorization_loss (data side)",
    "colorization_class_weights": "computed once from the dataset prior",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to test the script")
    parser.add_argument("--out", default="losses_cpu", help="stem of the result files")
    parser.add_argument("--min_runs", type=int, default=3)
    parser.add_argument("--max_runs", type=int, default=7)
    parser.add_argument("--budget_s", type=float, default=4.0)
    parser.add_argument("--only", default="", help="comma-separated loss names to run")
    args = parser.parse_args()

    if args.quick:
        sizes = dict(batch=64, dims=(16,), big=(32, 256), dino_batch=4, mae_batch=2,
                     color_batch=1, queue=128)  # fmt: skip
    else:
        sizes = dict(batch=4096, dims=(128, 256), big=(4096, 8192), dino_batch=128,
                     mae_batch=256, color_batch=16, queue=65536)  # fmt: skip
    cases = build_cases(**sizes)
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c.loss in keep]

    exported = sorted(
        n for n in dir(losses) if not n.startswith("_") and callable(getattr(losses, n))
    )
    covered = {c.loss for c in build_cases(**sizes)}
    skipped = {n: HELPERS.get(n, "NOT BENCHMARKED: no case in bench_losses.py") for n in exported
               if n not in covered}  # fmt: skip
    missing = [n for n in skipped if n.endswith("_loss")]
    if missing:
        print(f"WARNING: exported losses without a case: {missing}", file=sys.stderr)

    meta = dict(
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        command="PYTHONPATH=. python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        machine=_machine(),
        sizes={k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()},
    )
    start = time.perf_counter()
    rows = []
    for i, case in enumerate(cases):
        row = run_case(case, min_runs=args.min_runs, max_runs=args.max_runs,
                       budget_s=args.budget_s, seed=i)  # fmt: skip
        rows.append(row)
        print(
            f"{row['loss']:24s} b={row['batch']:<5d} {row['dim']:>12s}  "
            f"{row['median_ms']:10.1f} ms  x{row['runs']}  temp {row['xla_temp_mib']:8.0f} MiB  "
            f"rss+ {row['rss_delta_mib']:7.0f} MiB  (compile {row['compile_s']:.1f}s)",
            flush=True,
        )
    meta["total_s"] = time.perf_counter() - start

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(
        json.dumps(dict(meta=meta, rows=rows, not_timed=skipped), indent=2) + "\n"
    )
    (RESULTS / f"{args.out}.md").write_text(_markdown(meta, rows, skipped))
    print(f"wrote {RESULTS / args.out}.md and .json")


if __name__ == "__main__":
    main()
