"""Images/s, step time and MFU of the ssl_jax train step on an accelerator, in bf16.

    PYTHONPATH=. python experiments/bench/gpu_mfu.py            # on a GPU/TPU machine
    PYTHONPATH=. python experiments/bench/gpu_mfu.py --dry_run  # the same code path, tiny, CPU

Cases: SimCLR, BYOL, SwAV (2 x 224 + 6 x 96 multi-crop) and Barlow Twins, each with a
ResNet-50 (ImageNet stem) and a ViT-S/16, at 224 px with ``model.dtype='bfloat16'``
(parameters and optimiser state stay float32), from ``experiments/configs/*_imagenet.py``.
The step is the library's (``jit_step``); it gets views that are already augmented (the
augmentation's cost is measured by ``input_bench.py``), so this is the model's MFU.

MFU = FLOPs of one step (XLA's ``cost_analysis()`` of the compiled step) / median step
time / the chip's dense bf16 peak (``PEAK_TFLOPS`` by device kind, or ``--peak_tflops``).
Targets: >= 40% for ViT-S/16, >= 30% for ResNet-50. All cases are compiled concurrently
(XLA compiles on many host threads) so the whole run fits in about 5 minutes; each is then
timed for ``--steps`` steps after ``--warmup``. Prints one table and a JSON line.
"""

import argparse
import concurrent.futures
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax

from experiments.bench import jax_side

# Dense bf16 peak, TFLOP/s, by a substring of jax.Device.device_kind (first match wins).
PEAK_TFLOPS = {
    "H200": 989.4,
    "H100": 989.4,  # SXM; PCIe parts: pass --peak_tflops 756
    "GH200": 989.4,
    "B200": 2250.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "TPU v6": 918.0,
    "TPU v5p": 459.0,
    "TPU v5": 197.0,  # v5e / v5 lite
    "TPU v4": 275.0,
}
METHODS = ("simclr", "byol", "swav", "barlow_twins")
MODELS = {"resnet50": dict(encoder="resnet50"), "vit_s16": dict(encoder="vit_small")}
TARGET = {"resnet50": 0.30, "vit_s16": 0.40}


def peak_tflops(device: jax.Device, override: float | None) -> float | None:
    if override:
        return override
    return next((v for k, v in PEAK_TFLOPS.items() if k in device.device_kind), None)


def build(method: str, model: str, batch: int, dry_run: bool) -> jax_side.JaxCase:
    kw = {"model.dtype": "bfloat16", "model.patch_size": 16}
    if dry_run:  # the same code path at a size a CPU compiles in seconds
        kw.update(
            {
                "data.image_size": 32,
                "augment.local_size": 16,
                "model.depth": 1,
                "head.proj_hidden": 64,
                "head.pred_hidden": 64,
            }
        )
    c = jax_side.load_config(method, dataset="imagenet", batch=batch, **MODELS[model], **kw)
    case = jax_side.JaxCase(c)
    case.name = f"{method}/{model}"
    return case


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=256, help="images per step (per view)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--peak_tflops", type=float, default=None)
    p.add_argument("--dry_run", action="store_true", help="tiny sizes on CPU, same code path")
    p.add_argument("--only", default="", help="comma-separated method/model names")
    p.add_argument(
        "--compile_workers",
        type=int,
        default=0,
        help="concurrent compilations (default: all cases; 1 with --dry_run)",
    )
    a = p.parse_args()
    batch = 4 if a.dry_run else a.batch
    t_start = time.perf_counter()
    device = jax.devices()[0]
    peak = peak_tflops(device, a.peak_tflops)
    names = [(m, k) for m in METHODS for k in MODELS]
    if a.only:
        names = [n for n in names if "/".join(n) in a.only.split(",")]
    case_list = [build(m, k, batch, a.dry_run) for m, k in names]
    inputs = [jax_side.make_views(c.config) for c in case_list]
    workers = a.compile_workers or (1 if a.dry_run else len(case_list))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda ci: ci[0].setup(*ci[1]), zip(case_list, inputs, strict=True)))
    rows = []
    for case in case_list:
        for _ in range(a.warmup):
            case.step()
        times = []
        for _ in range(a.steps):
            t0 = time.perf_counter()
            case.step()
            times.append(time.perf_counter() - t0)
        step_s = statistics.median(times)
        flops = case.flops()
        mfu = flops / step_s / (peak * 1e12) if peak and flops else None
        model = case.name.split("/")[1]
        rows.append(
            dict(
                case=case.name,
                batch=batch,
                step_s=step_s,
                images_per_s=batch / step_s,
                tflops_per_step=flops / 1e12,
                mfu=mfu,
                target=TARGET[model],
                compile_s=case.compile_s,
            )
        )
    print(
        f"device: {device.device_kind} ({jax.device_count()} devices), peak bf16 "
        f"{peak or 'unknown (pass --peak_tflops)'} TFLOP/s, "
        f"total {time.perf_counter() - t_start:.0f} s"
    )
    print("| case | batch | step (ms) | images/s | TFLOP/step | MFU | target |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(
            f"| {r['case']} | {r['batch']} | {1e3 * r['step_s']:.1f} | {r['images_per_s']:.0f} | "
            f"{r['tflops_per_step']:.3f} | {mfu} | {100 * r['target']:.0f}% |"
        )
    print(json.dumps({"device": device.device_kind, "peak_tflops": peak, "rows": rows}))


if __name__ == "__main__":
    main()
