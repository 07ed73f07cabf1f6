"""Soak run: a long CPU training whose memory must stay flat, with checkpoints and kNN evals.

    python experiments/soak.py --minutes 70                      # the committed figures
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \
        python experiments/soak.py --minutes 70 --out experiments/results/soak/jemalloc
    python experiments/soak.py --compare A/rss.json B/rss.json   # one plot of both runs
    python experiments/soak.py --minutes 3                       # a check that it works

SimCLR with the ConvNet (the ``:tiny`` CIFAR-10 config, batch 64) on a slice of the CIFAR-10
training split (``ssl_jax.data.resolve_cifar10``: prepared TFDS copy, else the shared JPEG
archive), so an epoch is short and the run crosses many epoch boundaries (tf.data re-shuffles
at each). The pieces are the library's own: ``ssl_jax.train.loop.Trainer`` builds the run
(config checks, data source, checkpointer, method, optimiser) and its batch stream; the step
is ``jit_step(make_step_fn(...))``; checkpoints go through the Trainer's ``Checkpointer``
(asynchronous, 3 kept); metrics through ``create_writer``; every epoch a kNN evaluation
(``extract_features`` + ``knn_accuracy``) runs on a small bank. After each epoch the resident
set size (psutil, else ``VmRSS``) and its anonymous and file-backed parts, glibc's malloc heap
in use and held free (``mallinfo2``; what the process holds, against what the RSS shows), the
Python objects, the live JAX arrays and the step time are recorded, with the allocator.

Writes ``<out>/rss.json`` (every epoch's record, the settings, a summary with the RSS slope
over the second half of the run), ``<out>/rss.png`` (RSS and step time per epoch) and
``<out>/soak.md``. The process lowers its own priority to nice 19 (``--nice``).
"""

import argparse
import ctypes
import gc
import importlib.util
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ssl_jax import data  # noqa: E402
from ssl_jax.eval import extract_features, knn_accuracy  # noqa: E402
from ssl_jax.evaluate import encode_fn_for  # noqa: E402
from ssl_jax.train import loop, metrics_log  # noqa: E402
from ssl_jax.train.step import jit_step, make_step_fn  # noqa: E402

CONFIG = REPO / "experiments" / "configs" / "simclr_cifar10.py"
OUT = REPO / "experiments" / "results" / "soak"
MIB = 2**20


def _proc_status_kib(*keys: str) -> dict[str, int]:
    """Those ``/proc/self/status`` fields (kB values) that exist, in KiB; {} without /proc."""
    status = Path("/proc/self/status")
    if not status.exists():
        return {}
    fields = (line.partition(":") for line in status.read_text().splitlines())
    return {key: int(value.split()[0]) for key, _, value in fields if key in keys}


def rss_bytes() -> tuple[int, int]:
    """(current, peak) resident set size of this process in bytes (psutil, else /proc)."""
    fields = {k: v * 1024 for k, v in _proc_status_kib("VmRSS", "VmHWM").items()}
    try:
        import psutil

        current = psutil.Process().memory_info().rss
    except ImportError:
        current = fields["VmRSS"]
    return current, fields.get("VmHWM", current)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc():
    """glibc (``mallinfo2`` needs 2.33+), else None: the heap figures are glibc's."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        return libc
    except (OSError, AttributeError):
        return None


LIBC = _libc()


def heap_mib() -> dict:
    """glibc's malloc heap, all arenas: bytes handed out (in use) and bytes it holds free."""
    if LIBC is None or not allocator().startswith("glibc"):
        return {"heap_in_use_mib": None, "heap_free_mib": None}
    m = LIBC.mallinfo2()
    return {
        "heap_in_use_mib": round((m.uordblks + m.hblkhd) / MIB, 2),
        "heap_free_mib": round(m.fordblks / MIB, 2),
    }


def rss_parts_mib() -> dict:
    """The RSS split by kind (/proc): anonymous memory (heaps, buffers) and file-backed pages
    (shared libraries' code and data, memory-mapped files), which grow as code is first run."""
    kib = _proc_status_kib("RssAnon", "RssFile")
    return {
        f"rss_{key[3:].lower()}_mib": round(kib[key] / 1024, 2) if key in kib else None
        for key in ("RssAnon", "RssFile")
    }


def allocator() -> str:
    """Which malloc serves the process: a preloaded jemalloc / tcmalloc / mimalloc, else
    glibc's, with the malloc settings of ``GLIBC_TUNABLES`` and ``MALLOC_ARENA_MAX``."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if name in preload:
            return f"{name} (LD_PRELOAD)"
    settings = [
        t.removeprefix("glibc.malloc.")
        for t in os.environ.get("GLIBC_TUNABLES", "").split(":")
        if t.startswith("glibc.malloc.")
    ]
    if "MALLOC_ARENA_MAX" in os.environ:
        settings.insert(0, f"MALLOC_ARENA_MAX={os.environ['MALLOC_ARENA_MAX']}")
    return ", ".join(["glibc malloc", *settings])


def build_config(args: argparse.Namespace):
    """The ``:tiny`` SimCLR CIFAR-10 config with the soak's data, batch and checkpoints."""
    spec = importlib.util.spec_from_file_location(CONFIG.stem, CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("tiny")
    c.data.dataset = args.dataset
    c.data.data_dir = args.data_dir
    c.data.batch_size = args.batch_size
    c.data.train_split = f"train[:{args.train_examples}]"
    c.train.num_steps = 10**7  # the time budget stops the run; a near-constant lr meanwhile
    c.train.checkpoint_every = args.checkpoint_every
    c.train.log_every = 10
    c.train.async_checkpoint = True
    c.train.keep_checkpoints = 3
    return c


class KnnProbe:
    """kNN top-1 on fixed slices of the train (bank) and test splits, compiled once."""

    def __init__(self, trainer: loop.Trainer, *, bank: int, queries: int, batch_size: int):
        self.trainer, self.batch_size = trainer, batch_size
        self.splits = (f"train[:{bank}]", f"test[:{queries}]")
        self.encode = encode_fn_for(trainer.config, trainer.method)

    def __call__(self, state) -> float:
        c, source = self.trainer.config, self.trainer.source
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        feats = [
            extract_features(
                self.encode,
                data.eval_batches(
                    source, split=split, batch_size=self.batch_size, image_size=c.data.image_size
                ),
                mesh=self.trainer.mesh,
                variables=variables,
            )
            for split in self.splits
        ]
        (bank_x, bank_y), (query_x, query_y) = feats
        k = min(20, len(bank_x))
        result = knn_accuracy(bank_x, bank_y, query_x, query_y, num_classes=source.num_classes, k=k)
        return float(result["top1"])


def soak(args: argparse.Namespace) -> dict:
    """Trains for ``args.minutes`` (or ``args.max_epochs``); returns the record."""
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)  # one process from scratch: comparable records
    c = build_config(args)
    trainer = loop.Trainer(c, workdir)
    n_train = trainer.num_train_examples
    steps_per_epoch = max(1, n_train // c.data.batch_size)
    state = trainer.restore_or_init(next(trainer.batches(0))["image"])
    step_fn = jit_step(
        make_step_fn(trainer.method, trainer.tx, trainer.probe_tx, lr_schedule=trainer.schedule),
        trainer.mesh,
    )
    probe = KnnProbe(trainer, bank=args.eval_bank, queries=args.eval_queries, batch_size=64)
    writer = metrics_log.create_writer(workdir)
    batches = trainer.batches(0)
    records, t_start = [], time.monotonic()
    deadline = t_start + 60 * args.minutes
    step, epoch = 0, 0
    while time.monotonic() < deadline and (args.max_epochs <= 0 or epoch < args.max_epochs):
        t_epoch = time.monotonic()
        for _ in range(steps_per_epoch):
            batch = data.to_global(next(batches), trainer.mesh)
            state, metrics = step_fn(state, batch, trainer.base_key)
            step += 1
            if step % c.train.log_every == 0:
                writer.write_scalars(step, jax.device_get(metrics))
            if step % c.train.checkpoint_every == 0:
                trainer.ckpt.save(step, state, meta={"step": step})
        jax.block_until_ready(state)
        train_s = time.monotonic() - t_epoch
        knn_top1 = probe(state)
        epoch += 1
        gc.collect()
        rss, peak = rss_bytes()
        records.append(
            {
                "epoch": epoch,
                "step": step,
                "elapsed_s": round(time.monotonic() - t_start, 2),
                "rss_mib": round(rss / MIB, 2),
                "peak_rss_mib": round(peak / MIB, 2),
                **rss_parts_mib(),
                **heap_mib(),
                "python_objects": len(gc.get_objects()),
                "live_arrays": len(jax.live_arrays()),
                "step_s": round(train_s / steps_per_epoch, 5),
                "eval_s": round(time.monotonic() - t_epoch - train_s, 3),
                "loss": round(float(jax.device_get(metrics["loss"])), 5),
                "knn_top1": round(knn_top1, 2),
                "checkpoints": trainer.ckpt.all_steps(),
            }
        )
        r = records[-1]
        print(
            f"epoch {epoch:4d} step {step:6d} rss {r['rss_mib']:8.1f} MiB (anon "
            f"{r['rss_anon_mib']}, file {r['rss_file_mib']}, heap {r['heap_in_use_mib']}) live "
            f"arrays {r['live_arrays']:4d} step "
            f"{1e3 * r['step_s']:6.1f} ms kNN {knn_top1:5.1f}%",
            flush=True,
        )
    trainer.ckpt.save(step, state, meta={"step": step}, force=True)
    trainer.ckpt.close()
    writer.flush()
    settings = {
        "minutes": args.minutes,
        "method": c.method,
        "encoder": c.model.encoder,
        "batch_size": c.data.batch_size,
        "train_examples": n_train,
        "steps_per_epoch": steps_per_epoch,
        "checkpoint_every": c.train.checkpoint_every,
        "eval_bank": args.eval_bank,
        "eval_queries": args.eval_queries,
        "data": trainer.source.description,
        "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
        "cpu_count": os.cpu_count(),
        "nice": os.nice(0),
        "allocator": allocator(),
        "python": platform.python_version(),
        "jax": jax.__version__,
    }
    return {"settings": settings, "summary": summarize(records), "records": records}


def summarize(records: list[dict]) -> dict:
    """RSS growth after the warm-up: least-squares slope over the second half of the epochs."""
    rss = np.array([r["rss_mib"] for r in records], float)
    epochs = np.array([r["epoch"] for r in records], float)
    half = records[len(records) // 2 :]
    summary = {
        "epochs": len(records),
        "steps": records[-1]["step"] if records else 0,
        "rss_first_mib": float(rss[0]) if len(rss) else None,
        "rss_last_mib": float(rss[-1]) if len(rss) else None,
        "rss_max_mib": float(rss.max()) if len(rss) else None,
        "live_arrays_first_last": [records[0]["live_arrays"], records[-1]["live_arrays"]]
        if records
        else None,
    }
    if len(half) >= 2:
        x = epochs[len(records) // 2 :]
        y = rss[len(records) // 2 :]
        slope = float(np.polyfit(x, y, 1)[0])
        summary.update(
            rss_slope_mib_per_epoch_second_half=round(slope, 4),
            rss_change_second_half_mib=round(float(y[-1] - y[0]), 2),
            mean_step_ms_second_half=round(1e3 * float(np.mean([r["step_s"] for r in half])), 2),
        )
        if half[0].get("heap_in_use_mib") is not None:
            heap = np.array([r["heap_in_use_mib"] for r in half], float)
            summary.update(
                heap_in_use_first_last_mib=[records[0]["heap_in_use_mib"], float(heap[-1])],
                heap_in_use_slope_mib_per_epoch_second_half=round(
                    float(np.polyfit(x, heap, 1)[0]), 4
                ),
            )
        if "python_objects" in half[0]:
            summary["python_objects_first_last"] = [
                records[0]["python_objects"],
                records[-1]["python_objects"],
            ]
    return summary


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = result["records"]
    epochs = [r["epoch"] for r in records]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    ax.plot(epochs, [r["rss_mib"] for r in records], marker=".", label="RSS after the epoch")
    ax.plot(epochs, [r["peak_rss_mib"] for r in records], ls="--", lw=1, label="peak RSS")
    for key, label in (
        ("rss_anon_mib", "anonymous part of the RSS"),
        ("heap_in_use_mib", "malloc heap in use (glibc)"),
    ):
        if records and records[0].get(key) is not None:
            ax.plot(epochs, [r[key] for r in records], lw=1, label=label)
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    s = result["settings"]
    ax.set_title(
        f"soak: {s['method']} {s['encoder']}, batch {s['batch_size']}, "
        f"{result['summary']['steps']} steps in {s['minutes']:g} min, {s['allocator']}"
    )
    ax2.plot(epochs, [1e3 * r["step_s"] for r in records], marker=".", color="tab:orange")
    ax2.set_ylabel("mean step time (ms)")
    ax2.set_xlabel("epoch")
    ax2.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(result: dict, path: Path) -> None:
    s, m = result["settings"], result["summary"]
    slope = m.get("rss_slope_mib_per_epoch_second_half")
    lines = [
        "# Soak run: memory over a long CPU training",
        "",
        f"`python experiments/soak.py --minutes {s['minutes']:g}` (nice {s['nice']}): "
        f"{s['method']} with the {s['encoder']} encoder, batch {s['batch_size']}, on the first "
        f"{s['train_examples']} CIFAR-10 training images ({s['steps_per_epoch']} steps per "
        f"epoch), an asynchronous checkpoint every {s['checkpoint_every']} steps (3 kept), "
        f"and after every epoch a kNN evaluation ({s['eval_bank']}-image bank, "
        f"{s['eval_queries']} test queries). Data: {s['data']}. {s['devices']}, "
        f"{s['cpu_count']} CPUs, JAX {s['jax']}. Allocator: {s.get('allocator', 'glibc malloc')}.",
        "",
        f"- {m['epochs']} epochs, {m['steps']} steps.",
        f"- RSS after epoch 1: {m['rss_first_mib']:.0f} MiB; after the last: "
        f"{m['rss_last_mib']:.0f} MiB; highest: {m['rss_max_mib']:.0f} MiB.",
    ]
    if slope is not None:
        lines += [
            f"- Second half of the run: RSS slope {slope:+.3f} MiB per epoch "
            f"({m['rss_change_second_half_mib']:+.1f} MiB from its first to its last epoch); "
            f"mean step {m['mean_step_ms_second_half']:.1f} ms.",
        ]
    if "heap_in_use_slope_mib_per_epoch_second_half" in m:
        first, last = m["heap_in_use_first_last_mib"]
        lines += [
            f"- glibc malloc heap in use (all arenas, `mallinfo2`): {first:.0f} MiB after epoch "
            f"1, {last:.0f} MiB after the last; second-half slope "
            f"{m['heap_in_use_slope_mib_per_epoch_second_half']:+.3f} MiB per epoch.",
        ]
    if "python_objects_first_last" in m:
        lines += [
            f"- Python objects tracked by `gc` (first, last): {m['python_objects_first_last']}."
        ]
    if m["epochs"] < 20:
        lines += ["- A short check run: too few epochs to judge a trend; run it for hours."]
    lines += [
        f"- Live JAX arrays (first, last epoch): {m['live_arrays_first_last']}.",
        "",
        "![RSS and step time per epoch](rss.png)",
        "",
        "Every epoch's record (RSS and its anonymous and file-backed parts, peak RSS, the "
        "malloc heap in use and held free, Python objects, live arrays, step time, eval time, "
        "loss, kNN top-1, checkpoints on disk) is in `rss.json`. Flat means: after the first "
        "epochs (compilation, tf.data buffers, allocator warm-up) the RSS neither climbs with "
        "the epochs nor with the checkpoints and evaluations.",
        "",
    ]
    path.write_text("\n".join(lines))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, help="training time budget (required to train)")
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="RSS_JSON",
        help="no training: plot these runs' RSS per epoch together (<out>/compare.png)",
    )
    p.add_argument("--max-epochs", type=int, default=0, help="stop after this many (0: none)")
    p.add_argument("--dataset", default="cifar10", help="data.dataset (default: CIFAR-10)")
    p.add_argument("--data-dir", default="", help="TFDS data dir ('' = the default)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-examples", type=int, default=1280, help="training slice (an epoch)")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps")
    p.add_argument("--eval-bank", type=int, default=1000, help="kNN bank (training images)")
    p.add_argument("--eval-queries", type=int, default=500, help="kNN queries (test images)")
    p.add_argument("--workdir", default="/tmp/ssl_jax_soak", help="checkpoints, metrics")
    p.add_argument("--out", default=str(OUT), help="where rss.json/.png and soak.md go")
    p.add_argument(
        "--nice", type=int, default=19, help="lower this process's priority to this niceness"
    )
    return p.parse_args(argv)


def plot_compare(results: list[dict], path: Path) -> None:
    """RSS per epoch of several soak runs in one figure, each labelled by its allocator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for result in results:
        records, s = result["records"], result["settings"]
        ax.plot(
            [r["epoch"] for r in records],
            [r["rss_mib"] for r in records],
            lw=1,
            label=f"{s.get('allocator', 'glibc malloc')} ({s['minutes']:g} min)",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("RSS after the epoch (MiB)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    ax.set_title("soak: RSS per epoch by allocator")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.compare:
        results = [json.loads(Path(f).read_text()) for f in args.compare]
        Path(args.out).mkdir(parents=True, exist_ok=True)
        plot_compare(results, Path(args.out) / "compare.png")
        return {"compared": args.compare}
    if args.minutes is None:
        raise SystemExit("soak.py: --minutes is required (or --compare RSS_JSON ...)")
    # The lowest priority by default: a soak run must never compete with real work.
    os.nice(max(0, args.nice - os.nice(0)))
    result = soak(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    loop.save_json(out / "rss.json", result)
    plot(result, out / "rss.png")
    write_markdown(result, out / "soak.md")
    print(json.dumps(result["summary"], indent=1))
    return result


if __name__ == "__main__":
    main()
