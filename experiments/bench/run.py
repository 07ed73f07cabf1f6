"""The full benchmark: ssl_jax against PyTorch on this machine, in one command.

    PYTHONPATH=. python experiments/bench/run.py [--quick] [--out DIR] [--resume]

1. Checks that the PyTorch peers compute what ssl_jax computes (``peers.py``); stops if not.
2. Step time, images/s and peak memory for every case of ``cases.py`` at batch 64 and 256:
   ssl_jax at the training loop's steps per call, PyTorch NCHW and channels-last,
   interleaved (``step_bench.py``).
3. The changes before/after (``step_bench.before_after``): XLA's default options against
   ssl_jax's, every entry of ``step_bench.BEFORE`` (small-map convolution, max-pool,
   weight-gradient barrier, batch-norm, ReLU after the pool, the pool's selects,
   batch-norm's per-channel zeros, YNNPACK dots on Barlow Twins, SwAV's conditional around
   its codes only, strided convolutions' input gradient by phases), one step per call
   against the loop's, and where the time goes (``profile_step.py``), SimCLR ResNet-18 at
   batch 64 unless named.
4. Scaling: step time and memory against batch size, time and compile time against fake
   device count, memory against the Barlow Twins / VICReg embedding dimension.
5. Input pipeline: host and device augmentation rates, the colour-jitter change before and
   after, the augmentation's share of the library's default step.
6. Writes ``results.json`` (one record per case and batch: ``case, batch, jax_step_s,
   torch_step_s, ratio``; ``torch_step_s`` is the faster PyTorch memory format),
   ``details.json`` (everything), ``README.md`` and ``plots/``.

Every measurement runs in its own process (``worker.py``) and is stamped with the time
and commit it was made at. ``--resume`` keeps the measurements already in
``details.json``; ``--redo TEXT`` (with ``--resume``) measures again those whose key
contains TEXT (e.g. ``simclr_convnet`` after a change to the ConvNet). ``--quick`` is a
smoke run at tiny sizes that writes to a temporary directory unless ``--out`` is given. On
a quiet 2-core machine the full run takes 3-4 hours (an estimate: at 4 steps per call seven
of the ten step rows took 90 minutes); keep the machine otherwise idle (the load average
before each measurement is recorded in ``details.json``).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from experiments.bench import cases, peers, provenance, report  # noqa: E402


def machine() -> dict:
    import flax
    import jax
    import jaxlib
    import numpy as np
    import optax
    import torch

    cpu, flags = platform.processor(), set()
    for line in reversed(Path("/proc/cpuinfo").read_text().splitlines()):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return dict(
        cpu=cpu,
        # The vector extensions the kernels can use: the ratios depend on them (README).
        isa=[f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags],
        cores=len(os.sched_getaffinity(0)),
        memory_gib=mem,
        load_average=os.getloadavg(),
        python=platform.python_version(),
        jax=jax.__version__,
        jaxlib=jaxlib.__version__,
        flax=flax.__version__,
        optax=optax.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        threads=len(os.sched_getaffinity(0)),
    )


class Runner:
    """Runs workers, keeps every result in ``details.json`` as it arrives."""

    def __init__(self, out: Path, resume: bool, offline: bool = False, redo=()):
        self.path = out / "details.json"
        self.done, self.meta, self.missing, self.offline = {}, {}, [], offline
        self.stamps = {}  # key -> when and at which commit it was measured
        if (resume or offline) and self.path.exists():
            saved = json.loads(self.path.read_text())
            done = saved.pop("measurements", {})
            self.done = {k: v for k, v in done.items() if not any(r in k for r in redo)}
            self.stamps = {k: v for k, v in saved.pop("stamps", {}).items() if k in self.done}
            self.meta = saved

    def __call__(self, kind: str, env: dict | None = None, **args):
        key = f"{kind} {json.dumps(args, sort_keys=True)} {json.dumps(env or {}, sort_keys=True)}"
        if key in self.done:
            return self.done[key]
        if self.offline:  # --report_only: what is not measured yet stays out
            self.missing.append(key)
            return None
        print(f"[{time.strftime('%H:%M:%S')}] {kind} {args} {env or ''}", flush=True)
        full_env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
        proc = subprocess.run(
            [sys.executable, str(HERE / "worker.py"), kind, json.dumps(args)],
            env=full_env,
            capture_output=True,
            text=True,
        )
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not lines:
            raise RuntimeError(f"{kind} {args} failed:\n{proc.stderr[-4000:]}")
        result = json.loads(lines[-1][len("RESULT ") :])
        self.done[key] = result
        self.stamps[key] = dict(utc=_now(), commit=provenance.commit(ROOT, self.path.parent))
        self.save()
        return result

    def save(self, **extra) -> None:
        self.meta.update(extra)
        self.path.write_text(
            json.dumps({**self.meta, "measurements": self.done, "stamps": self.stamps}, indent=1)
        )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def measure_all(run: Runner, q: bool, data_dir: str | None) -> dict:
    """Every measurement of the benchmark, in order (``None`` where ``run`` has none)."""
    reps = 2 if q else 7
    batches = (16,) if q else cases.BATCHES

    def some(*results):
        return [r for r in results if r is not None]

    steps = some(
        *(run("step", case=c.name, batch=b, reps=reps) for c in cases.CASES for b in batches)
    )
    xla_options = run("xla_options", case="simclr_resnet18", batch=16 if q else 64, reps=reps)
    ynn_dots = run("ynn_dots", case="barlow_twins_resnet18", batch=16 if q else 64, reps=reps)
    swav_codes_cond = run(
        "swav_codes_cond", case="swav_multicrop_resnet18", batch=16 if q else 64, reps=reps
    )
    strided_conv = run("strided_conv", case="simclr_resnet18", batch=16 if q else 64, reps=reps)
    map_matrix = run("map_matrix", case="swav_multicrop_resnet18", batch=16 if q else 64, reps=reps)
    select_relu = run("select_relu", case="byol_resnet18", batch=16 if q else 64, reps=reps)
    eval_options = run(
        "eval_options", batch=16 if q else 256, num_batches=2 if q else 4, reps=3 if q else 9
    )
    small_map = run(
        "small_map", case="swav_multicrop_resnet18", batch=16 if q else 64, reps=max(2, reps - 2)
    )
    max_pool = run("max_pool", case="simclr_convnet", batch=16 if q else 256, reps=reps)
    weight_grad = run(
        "weight_grad", case="swav_multicrop_resnet18", batch=16 if q else 64, reps=max(2, reps - 2)
    )
    batch_norm = run("batch_norm", case="simclr_resnet18", batch=16 if q else 64, reps=reps)
    relu_after_pool = run(
        "relu_after_pool", case="simclr_convnet", batch=16 if q else 256, reps=reps
    )
    pool_selects = run("pool_selects", case="simclr_convnet", batch=16 if q else 256, reps=reps)
    channel_zero = run("channel_zero", case="simclr_resnet18", batch=16 if q else 64, reps=reps)
    steps_per_call = run("steps_per_call", case="simclr_resnet18", batch=16 if q else 64, reps=reps)
    profile = run("profile", case="simclr_resnet18", batch=16 if q else 64, steps=1 if q else 2)
    extra_batches = {
        "simclr_convnet": (8, 32) if q else (32, 128, 512),
        "simclr_resnet18": (8, 32) if q else (32, 128),
    }
    batch_rows = [d for d in steps if d["case"] in extra_batches] + some(
        *(  # ``before=False`` is the default now; it stays in these keys for older sittings
            run("step", case=case, batch=b, reps=max(2, reps - 2), before=False)
            for case, bs in extra_batches.items()
            for b in bs
        )
    )
    dev_case = "simclr_convnet" if q else "simclr_resnet18"
    devices = some(
        *(
            run(
                "devices",
                env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"},
                case=dev_case,
                batch=16 if q else 64,
                reps=reps,
            )
            for n in ((1, 2) if q else (1, 2, 4, 8))
        )
    )
    embedding = some(
        *(
            run("embedding", method=m, dim=d, batch=16 if q else 64, reps=max(2, reps - 2))
            for m in ("barlow_twins", "vicreg")
            for d in ((128, 256) if q else (512, 1024, 2048, 4096, 8192))
        )
    )
    jitter = run("jitter", batch=32 if q else 256, reps=3 if q else 9)
    device_views = some(
        *(
            run("device_views", case=c, batch=16 if q else 256, reps=max(2, reps - 2))
            for c in ("simclr_resnet18", "swav_multicrop_resnet18", "simclr_convnet")
        )
    )
    pipeline = run("pipeline", data_dir=data_dir, quick=q)
    return dict(
        steps=steps,
        profile=profile,
        xla_options=xla_options,
        ynn_dots=ynn_dots,
        swav_codes_cond=swav_codes_cond,
        strided_conv=strided_conv,
        map_matrix=map_matrix,
        select_relu=select_relu,
        eval_options=eval_options,
        small_map=small_map,
        max_pool=max_pool,
        weight_grad=weight_grad,
        batch_norm=batch_norm,
        relu_after_pool=relu_after_pool,
        pool_selects=pool_selects,
        channel_zero=channel_zero,
        steps_per_call=steps_per_call,
        scaling=dict(batch=batch_rows, devices=devices, embedding=embedding),
        input=dict(jitter=jitter or [], device_views=device_views, pipeline=pipeline or []),
    )


def write_results(steps: list[dict], out: Path) -> None:
    keys = ("case", "batch", "jax_step_s", "torch_step_s", "ratio")
    records = [{k: d[k] for k in keys} for d in steps]
    (out / "results.json").write_text(json.dumps(records, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run at tiny sizes")
    p.add_argument("--out", default=None, help="output directory (default: this folder)")
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--redo",
        action="append",
        default=[],
        help="with --resume: measure again what has TEXT in its key (repeatable)",
    )
    p.add_argument(
        "--report_only",
        action="store_true",
        help="measure nothing: write results.json, README.md and plots from details.json as "
        "it stands (an interrupted run's README lists what is missing)",
    )
    p.add_argument("--data_dir", default=None, help="TFDS data dir for the CIFAR-10 rows")
    a = p.parse_args()
    out = Path(a.out) if a.out else (Path(tempfile.mkdtemp()) if a.quick else HERE)
    out.mkdir(parents=True, exist_ok=True)
    if a.report_only:
        run = Runner(out, resume=True, offline=True)
        full = dict(run.meta, **measure_all(run, a.quick, a.data_dir), missing=run.missing)
        full["stamps"] = run.stamps
        write_results(full["steps"], out)
        report.write(full, out)
        print(f"wrote {out}/results.json, README.md, plots/ ({len(run.missing)} missing)")
        return
    if a.redo and not a.resume:
        p.error("--redo needs --resume")
    t0 = time.time()
    command = " ".join(["python", *sys.argv])
    info = dict(date=_now(), command=command, machine=machine())
    peers.check_all(cases.CASES)
    print("PyTorch peers match ssl_jax (losses, gradients, LARS, parameter counts)", flush=True)
    run = Runner(out, a.resume, redo=a.redo)
    # A resumed run keeps the first sitting's date and command and lists every sitting.
    sitting = dict(
        date=info["date"],
        command=command,
        commit=provenance.commit(ROOT, out),
        machine=info["machine"],
    )
    if a.resume and "date" in run.meta:
        info.update(date=run.meta["date"], command=run.meta["command"])
        sittings = run.meta.get("sittings") or [
            dict(date=run.meta["date"], command=run.meta["command"], commit="not recorded")
        ]
    else:
        sittings = []
    info["sittings"] = [*sittings, sitting]
    run.save(**info)
    full = dict(info, **measure_all(run, a.quick, a.data_dir), duration_min=(time.time() - t0) / 60)
    full["stamps"] = run.stamps
    write_results(full["steps"], out)
    run.save(**{k: v for k, v in full.items() if k not in ("machine", "date", "command")})
    report.write(full, out)
    print(
        f"wrote {out}/results.json, details.json, README.md, plots/ "
        f"in {(time.time() - t0) / 60:.0f} min"
    )


if __name__ == "__main__":
    main()
