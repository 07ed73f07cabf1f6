"""Input throughput: host (tf.data) vs device (jitted jnp) view making, SimCLR 2-view and
SwAV multi-crop 2+6, on CIFAR-10 (32 px, real JPEGs) and synthetic 224 px JPEGs.

    python experiments/bench_input.py [--data_dir DIR] [--quick]

Writes ``experiments/results/input_throughput.{md,json}``. Images/s counts source images
(each yields all of its views). Paths measured:

- ``host decode``: tf.data reads + decodes + batches (``train_batches``), no views.
- ``host crops``: tf.data also makes every view's random resized crop (``host_crops``).
- ``device recipe``: the whole recipe (crop, flip, jitter, gray, blur, solarise, normalise)
  as one jitted ``make_views`` call on a uint8 batch already in memory.
- ``device photometric``: only the flip + photometric half on host-made crops.

On a machine with an accelerator the device numbers are what matter; here the "device" is
the same CPU the host path runs on, so the device rows are a CPU lower bound.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ssl_jax import augment, data

RESULTS = Path(__file__).resolve().parent / "results"
D224 = "224px (synthetic 256x320 JPEGs)"


def _rate(fn, n_images_per_call: int, *, calls: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return n_images_per_call * calls / (time.perf_counter() - t0)


def _iter_rate(it, batch: int, calls: int) -> float:
    return _rate(lambda: next(it), batch, calls=calls, warmup=2)


def _device_rate(fn, args, batch: int, calls: int) -> float:
    return _rate(lambda: jax.block_until_ready(fn(*args)), batch, calls=calls)


def _row(data_name, recipe, views, path, batch, rate) -> dict:
    return dict(data=data_name, recipe=recipe, views=views, path=path, batch=batch,
                images_per_s=rate)  # fmt: skip


def _device_rows(data_name, recipe, n_local, label, images, crops, calls) -> list[dict]:
    """The whole recipe on full images, and only its photometric half on host crops."""
    key = jax.random.key(0)
    full = jax.jit(lambda k, x: augment.make_views(recipe, k, x, num_local_crops=n_local))
    photo = jax.jit(lambda k, c: augment.photometric_views(recipe, k, c))
    b = len(images)
    return [
        _row(data_name, recipe, label, "device recipe", b,
             _device_rate(full, (key, images), b, calls)),
        _row(data_name, recipe, label, "device photometric", b,
             _device_rate(photo, (key, crops), b, calls)),
    ]  # fmt: skip


MULTI = (("2", 0), ("2+6", 6))


def bench_cifar(data_dir: str | None, quick: bool) -> list[dict]:
    src = data.resolve_cifar10(data_dir, download=False)
    name, batch, calls = "CIFAR-10 32px", 256, 5 if quick else 20
    it = data.train_batches(src, batch_size=batch, image_size=32, seed=0)
    rows = [_row(name, "-", "-", "host decode", batch, _iter_rate(it, batch, calls))]
    images = next(it)["image"]
    for recipe, (label, n_local) in zip(("simclr_cifar", "swav_cifar"), MULTI, strict=True):
        specs = data.crop_specs(recipe, num_local_crops=n_local)
        hc = data.train_batches(src, batch_size=batch, image_size=32, seed=0, host_crops=specs)
        rows.append(_row(name, recipe, label, "host crops", batch, _iter_rate(hc, batch, calls)))
        crops = next(hc)["views"]
        rows += _device_rows(name, recipe, n_local, label, images, crops, calls)
    return rows


def _synthetic_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """Smooth random colour fields plus noise, 256 x 320 (ImageNet-like size and entropy)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
        big = tf.image.resize(small, (256, 320), method="bicubic")
        noisy = tf.clip_by_value(big + rng.normal(0, 12, (256, 320, 3)), 0, 255)
        out.append(tf.io.encode_jpeg(tf.cast(noisy, tf.uint8), quality=90).numpy())
    return out


def bench_224(quick: bool) -> list[dict]:
    jpegs = _synthetic_jpegs(64)
    host_batch, dev_batch, calls = 64, 16, 3 if quick else 10
    # Enumerated, so each element's crop draws are keyed by its own stream position.
    base = tf.data.Dataset.from_tensor_slices(jpegs).repeat().enumerate()

    def host(fn):
        fn = tf.autograph.experimental.do_not_convert(fn)  # plain TF ops, nothing to convert
        ds = base.map(fn, num_parallel_calls=tf.data.AUTOTUNE).batch(host_batch).prefetch(2)
        return iter(tfds.as_numpy(ds))

    decode = lambda i, b: tf.image.resize(tf.io.decode_jpeg(b, channels=3), (224, 224))
    rows = [
        _row(D224, "-", "-", "host decode+resize", host_batch,
             _iter_rate(host(decode), host_batch, calls))
    ]  # fmt: skip
    images = np.stack([decode(0, j).numpy().astype(np.uint8) for j in jpegs[:dev_batch]])
    for recipe, (label, n_local) in zip(("simclr", "swav"), MULTI, strict=True):
        specs = data.crop_specs(recipe, num_local_crops=n_local)
        it = host(lambda i, b, s=specs: data.crop_views(b, i, specs=s, seed=0))
        rows.append(
            _row(D224, recipe, label, "host crops", host_batch, _iter_rate(it, host_batch, calls))
        )
        crops = [np.asarray(v)[:dev_batch] for v in next(it)]
        rows += _device_rows(D224, recipe, n_local, label, images, crops, calls)
    return rows


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "jax_devices": [str(d) for d in jax.devices()],
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "tensorflow": tf.__version__,
        "tensorflow_datasets": tfds.__version__,
        "numpy": np.__version__,
    }


def write(rows: list[dict], info: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    m = info["machine"]
    (RESULTS / "input_throughput.json").write_text(json.dumps({**info, "rows": rows}, indent=1))
    lines = [
        "# Input pipeline throughput",
        "",
        f"- date: {info['date']}",
        f"- command: `{info['command']}`",
        f"- machine: {info['machine']['cpu']}, {info['machine']['cpu_count']} CPUs, load average "
        f"at start {', '.join(f'{x:.1f}' for x in info['machine']['load_average_at_start'])} "
        "(a shared machine: other jobs ran at the same time, so treat numbers as rough)",
        f"- JAX devices: {', '.join(info['machine']['jax_devices'])}",
        f"- versions: python {m['python']}, jax {m['jax']}, tensorflow {m['tensorflow']}, "
        f"tfds {m['tensorflow_datasets']}",
        "",
        "Images/s counts source images (each yields all its views). Host rows: tf.data with "
        "its own thread pool; device rows: one jitted call on a batch in memory (here the "
        "device is the CPU).",
        "",
        "| data | recipe | views | path | batch | images/s |",
        "|---|---|---|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['recipe']} | {r['views']} | {r['path']} | {r['batch']} | "
            f"{r['images_per_s']:,.0f} |"
        )
    (RESULTS / "input_throughput.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS default)")
    parser.add_argument("--quick", action="store_true", help="fewer timed batches")
    parser.add_argument("--skip_224", action="store_true", help="only the CIFAR rows")
    args = parser.parse_args()
    t0 = time.time()
    info = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
    }
    rows = bench_cifar(args.data_dir, args.quick)
    if not args.skip_224:
        rows += bench_224(args.quick)
    info["wall_s"] = round(time.time() - t0, 1)
    write(rows, info)
    for r in rows:
        rate = r["images_per_s"]
        print(f"{r['data']:34s} {r['recipe']:13s} {r['views']:4s} {r['path']:20s} {rate:10,.0f}")
    print(f"wrote {RESULTS / 'input_throughput.md'} in {info['wall_s']} s")


if __name__ == "__main__":
    main()
