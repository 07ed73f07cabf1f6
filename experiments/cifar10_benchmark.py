"""CIFAR-10 benchmark of every method for a fixed wall-time budget on CPU (or 200 GPU epochs).

    PYTHONPATH=. python experiments/cifar10_benchmark.py --minutes 15      # the full CPU run
    PYTHONPATH=. python experiments/cifar10_benchmark.py --minutes 2 --methods simclr \\
        --out /tmp/bench                                                   # a quick check
    PYTHONPATH=. python experiments/cifar10_benchmark.py --gpu             # 200-epoch recipe

Each method is pretrained on the CIFAR-10 training images (``ssl_jax.data.resolve_cifar10``:
the shared JPEG archive in ``../shared/data/`` when no TFDS copy is prepared) with its CPU
settings (``experiments/cifar10/settings.py``) for as many steps as fit in ``--minutes``
(measured step time, ``experiments/cifar10/budget.py``), then evaluated with kNN (k = 200,
T = 0.07) and a linear probe on the full 50k bank / 10k test set, next to three baselines:
the same encoder randomly initialised, the same encoder trained with labels for the same
budget, and kNN on raw pixels (``experiments/cifar10/baselines.py``).

Resumable and incremental: every run's record lands in ``<out>/cifar10_cpu/<run>.json`` as
soon as it is done and is skipped on a rerun (``--force`` redoes the selected runs); an
interrupted training run resumes from its checkpoints in ``<workdir>/cifar10_cpu/<run>/``.
After every record, ``<out>/cifar10_cpu.json`` (one row per method, fixed keys),
``<out>/cifar10_cpu.md`` and the figures in ``<out>/cifar10_cpu/`` are rebuilt from all
records there. ``--gpu`` writes ``cifar10_gpu.*`` instead.
"""

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from experiments.cifar10 import report, settings  # noqa: E402
from experiments.cifar10.jobs import Bench, random_init_job, raw_pixels_job, train_job  # noqa: E402
from ssl_jax import build_methods, data  # noqa: E402

log = logging.getLogger("cifar10_benchmark")
_HANDLER = logging.StreamHandler()
_HANDLER.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))

ORDER = (
    "simclr",
    "moco_v2",
    "moco_v3",
    "swav",
    "dino",
    "byol",
    "simsiam",
    "barlow_twins",
    "vicreg",
    "rotation",
    "mae",
    "nnclr",
    "colorization",
    "patch_position",
    "jigsaw",
    "maskfeat",
    "ibot",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per run")
    p.add_argument("--methods", default="", help="comma-separated (default: every method)")
    p.add_argument("--force", action="store_true", help="redo the selected runs")
    p.add_argument("--out", default=str(REPO / "experiments" / "results"), help="results dir")
    p.add_argument("--workdir", default=str(REPO / "runs"), help="checkpoints and logs")
    p.add_argument("--gpu", action="store_true", help="published ResNet-18 recipe, by epochs")
    p.add_argument("--epochs", type=int, default=settings.GPU_EPOCHS, help="--gpu epochs")
    p.add_argument("--steps", type=int, default=0, help="fixed steps instead of --minutes")
    p.add_argument("--variant", default="demo", help="config variant the CPU runs start from")
    p.add_argument("--batch-size", type=int, default=0, help="override data.batch_size")
    p.add_argument("--linear-epochs", type=int, default=0, help="override eval.linear_epochs")
    p.add_argument("--eval-train-examples", type=int, default=0, help="kNN/probe bank cap")
    p.add_argument("--dataset", default="cifar10", help="'cifar10' or 'folder:PATH'")
    p.add_argument("--data-dir", default="", help="TFDS data dir (default: TFDS default)")
    p.add_argument("--hard-cap", type=float, default=1.5, help="stop at this x budget (0: off)")
    p.add_argument("--budget-margin", type=float, default=0.9, help="plan steps for this x budget")
    p.add_argument("--calibration-steps", type=int, default=20, help="steps timed per run")
    p.add_argument("--calibration-seconds", type=float, default=20.0, help="timing limit")
    p.add_argument("--no-baselines", action="store_true", help="methods only")
    p.add_argument("--no-run-figures", action="store_true", help="no per-run t-SNE/neighbours")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.steps < 0 or args.hard_cap < 0:
        p.error("--minutes must be > 0, --steps and --hard-cap >= 0")
    if not 0 < args.budget_margin <= 1:
        p.error("--budget-margin must be in (0, 1]")
    return args


def select_methods(spec: str) -> list[str]:
    """The methods to run: ``spec`` (comma-separated) or every registered one with a config."""
    known = [m for m in build_methods.BUILDERS if m != settings.SUPERVISED]
    known = sorted(known, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))
    with_config = [m for m in known if settings.config_path(m).exists()]
    for m in sorted(set(known) - set(with_config)):
        log.warning("method %r has a builder but no CIFAR-10 config: not benchmarked", m)
    if not spec:
        return with_config
    chosen = [m.strip() for m in spec.split(",") if m.strip()]
    bad = [m for m in chosen if m not in with_config]
    if bad:
        raise SystemExit(f"unknown method(s) {bad}; known: {', '.join(with_config)}")
    return chosen


def main(argv: list[str] | None = None) -> Path:
    """Runs the benchmark; returns the combined JSON's path."""
    args = parse_args(argv)
    # absl owns the root logger: this script's progress lines go to stdout by themselves.
    _HANDLER.setStream(sys.stdout)
    if _HANDLER not in log.handlers:
        log.addHandler(_HANDLER)
    log.setLevel(logging.INFO)
    log.propagate = False
    methods = select_methods(args.methods)
    stem = "cifar10_gpu" if args.gpu else "cifar10_cpu"
    source = data.resolve_source(args.dataset, data_dir=args.data_dir or None)
    shown = sys.argv[1:] if argv is None else argv
    bench = Bench(
        args=args,
        source=source,
        num_train=source.num_examples("train"),
        records=Path(args.out) / stem,
        work=Path(args.workdir) / stem,
        command="PYTHONPATH=. python experiments/cifar10_benchmark.py " + shlex.join(shown),
        stem=stem,
    )
    bench.records.mkdir(parents=True, exist_ok=True)
    configs = {m: bench.method_config(m) for m in methods}
    if not args.no_baselines:
        raw_pixels_job(bench, configs[methods[0]])
    for i, m in enumerate(methods):
        config = configs[m]
        key = settings.encoder_key(config)
        if not args.no_baselines:
            sup = settings.baseline_config(config, overrides=bench.overrides())
            random_init_job(bench, key, settings.fit_to_steps(sup, settings.SUPERVISED, 1, 1))
            train_job(bench, f"supervised_{key}", "supervised", settings.SUPERVISED, sup, i)
        train_job(bench, m, "method", m, config, i)
    paths = report.rebuild(bench.records.parent, stem, header=bench.header())
    print(f"results: {paths['json']} and {paths['md']}")
    return paths["json"]


if __name__ == "__main__":
    main()
