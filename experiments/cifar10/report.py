"""The benchmark's combined outputs, rebuilt from the per-run records every time one lands:
``<stem>.json`` (one row per method, fixed keys), ``<stem>.md`` (tables, settings, machine)
and the comparison figures under ``<stem>/``."""

import datetime
import importlib.metadata
import json
import math
import os
import platform
from pathlib import Path

import jax
import numpy as np
from matplotlib.figure import Figure

# The combined JSON's keys, exactly (accuracies in percent).
KEYS = (
    "method",
    "epochs",
    "wall_s",
    "knn_top1",
    "linear_top1",
    "random_init_knn_top1",
    "supervised_linear_top1",
    "std",
    "eff_rank",
    "alignment",
    "uniformity",
)
CURVE_KEYS = ("loss", "probe_top1", "embedding_std", "alignment", "uniformity", "learning_rate")
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "tensorflow-cpu")


def load_records(directory: Path) -> dict[str, dict]:
    """``{name: record}`` of every ``*.json`` record in ``directory``."""
    out = {}
    for path in sorted(directory.glob("*.json")):
        rec = json.loads(path.read_text())
        if isinstance(rec, dict) and "kind" in rec:
            out[rec["name"]] = rec
    return out


def load_json(path: Path):
    return json.loads(Path(path).read_text())


def write_json(path: Path, obj) -> None:
    """Atomic write: a crash never leaves half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)


def curve(metrics_rows: list[dict], *, max_points: int = 200) -> dict[str, list]:
    """A thinned copy of a run's logged metrics, kept in its record for the figures."""
    rows = metrics_rows[:: max(1, math.ceil(len(metrics_rows) / max_points))]
    out = {"step": [r["step"] for r in rows]}
    for key in CURVE_KEYS:
        out[key] = [r.get(key) for r in rows]
    return out


def _by_kind(records: dict[str, dict], kind: str) -> list[dict]:
    return sorted(
        (r for r in records.values() if r["kind"] == kind), key=lambda r: r.get("order", 0)
    )


def _baseline(records: dict[str, dict], kind: str, encoder_key: str, field: str):
    rec = records.get(f"{kind}_{encoder_key}")
    return None if rec is None else rec[field]


def combined_rows(records: dict[str, dict]) -> list[dict]:
    """The combined JSON: every method, the supervised baseline of the most used encoder,
    and raw pixels; each row with exactly :data:`KEYS`."""
    rows = []
    methods = _by_kind(records, "method")
    for r in methods:
        rows.append(
            {
                **{k: r[k] for k in KEYS if k in r},
                "random_init_knn_top1": _baseline(
                    records, "random_init", r["encoder_key"], "knn_top1"
                ),
                "supervised_linear_top1": _baseline(
                    records, "supervised", r["encoder_key"], "linear_top1"
                ),
            }
        )
    encoders = [r["encoder_key"] for r in methods]
    supervised = _by_kind(records, "supervised")
    if supervised:
        main = max(supervised, key=lambda r: encoders.count(r["encoder_key"]))
        rows.append(
            {
                **{k: main[k] for k in KEYS if k in main},
                "random_init_knn_top1": _baseline(
                    records, "random_init", main["encoder_key"], "knn_top1"
                ),
                "supervised_linear_top1": main["linear_top1"],
            }
        )
    if "raw_pixels" in records:
        raw = records["raw_pixels"]
        rows.append({**{k: raw[k] for k in KEYS if k in raw}})
    return [{k: row.get(k) for k in KEYS} for row in rows]


def environment() -> dict:
    """Machine, software versions and date of this process."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"
        + (f" ({cpu})" if cpu else ""),
        "platform": platform.platform(),
        "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
        "versions": versions,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _fmt(v, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    return format(v, spec)


def _minutes(s) -> str:
    return "-" if s is None else f"{s / 60:.1f} min"


def _table(records: dict[str, dict]) -> list[str]:
    head = (
        "| method | encoder | steps | epochs | train wall time | kNN top-1 | linear top-1 | "
        "random-init kNN (same encoder) | supervised linear (same encoder) | std | eff. rank "
        "| alignment | uniformity |"
    )
    lines = [head, "|" + "---|" * 13]

    def row(label, r, rand, sup):
        steps = f"{r.get('steps', 0)}" + (" (capped)" if r.get("capped") else "")
        lines.append(
            f"| {label} | {r.get('encoder_key', '-')} | {steps} | "
            f"{_fmt(r['epochs'])} | {_minutes(r['wall_s'])} | {_fmt(r['knn_top1'])} | "
            f"{_fmt(r['linear_top1'])} | {_fmt(rand)} | {_fmt(sup)} | {_fmt(r['std'], '.4f')} | "
            f"{_fmt(r['eff_rank'], '.1f')} | {_fmt(r['alignment'], '.3f')} | "
            f"{_fmt(r['uniformity'], '.3f')} |"
        )

    for r in _by_kind(records, "method"):
        enc = r["encoder_key"]
        rand = _baseline(records, "random_init", enc, "knn_top1")
        sup = _baseline(records, "supervised", enc, "linear_top1")
        row(f"`{r['method']}`", r, rand, sup)
    for r in _by_kind(records, "supervised"):
        rand = _baseline(records, "random_init", r["encoder_key"], "knn_top1")
        row("**supervised** (labels, same budget)", r, rand, r["linear_top1"])
    for r in _by_kind(records, "random_init"):
        row("**random init** (untrained)", r, r["knn_top1"], None)
    if "raw_pixels" in records:
        row("**raw pixels** (per-image centred)", records["raw_pixels"], None, None)
    return lines


def _pixel_section(raw: dict) -> list[str]:
    pil = raw.get("pil", {})
    lines = [
        "## Raw-pixel kNN: the protocol behind 45.5%",
        "",
        f"k = {raw['k']}, T = {raw['temperature']}, cosine similarity, bank = "
        f"{raw['num_train']} training images, {raw['num_test']} test queries. Pixels scaled "
        "to [0, 1] (any scale cancels in the L2 normalisation unless the centring constants "
        "are on another scale, last row).",
        "",
        "| centring | kNN top-1 (TF decoder, as training) | kNN top-1 (PIL decoder) |",
        "|---|---|---|",
    ]
    for name, p in raw["protocols"].items():
        lines.append(
            f"| `{name}`: {p['description']} | {p['knn_top1']:.2f} | {_fmt(pil.get(name))} |"
        )
    main = raw["protocols"]["per_image_mean"]["knn_top1"]
    mean_image = raw["protocols"]["dataset_mean_image"]["knn_top1"]
    pil_note = (
        f" ({pil['per_image_mean']:.2f}% and {pil['dataset_mean_image']:.2f}% from PIL-decoded "
        "pixels)"
        if "per_image_mean" in pil and "dataset_mean_image" in pil
        else ""
    )
    lines += [
        "",
        "The issue's figure, 45.5% (k = 200, T = 0.07, mean-centred and L2-normalised pixels), "
        "is the PER-IMAGE centring with the full 50k bank: each image minus the mean of its "
        "3072 values (cosine of centred pixels = Pearson correlation). Centring with the "
        "training set's mean image instead is what gave 42.66% elsewhere. This run: "
        f"{main:.2f}% and {mean_image:.2f}%{pil_note} with a bank of {raw['num_train']} images"
        + ("." if raw["num_train"] >= 50_000 else " (not the full bank: not comparable).")
        + " The two JPEG decoders (TensorFlow's, used for training, and PIL's) differ by a "
        "few grey levels on some pixels, which moves the accuracy by hundredths of a point.",
        "",
    ]
    return lines


def _settings_section(records: dict[str, dict]) -> list[str]:
    lines = [
        "## Per-method settings",
        "",
        "| run | optimiser | peak lr | batch | warm-up steps | step time | CPU changes |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("method", "supervised"):
        for r in _by_kind(records, kind):
            s = r.get("settings", {})
            cal = r.get("calibration") or {}
            step = f"{cal['step_s']:.2f} s" if cal.get("step_s") else "-"
            lines.append(
                f"| {r['name']} | {s.get('optimizer', '-')} | {_fmt(s.get('peak_lr'), '.4g')} | "
                f"{s.get('batch_size', '-')} | {s.get('warmup_steps', '-')} | {step} | "
                f"{s.get('notes', '-')} |"
            )
    return [*lines, ""]


def _protocol_text(records: dict[str, dict]) -> str:
    evals = [r["eval"] for r in records.values() if "eval" in r]
    banks = sorted({e["num_train_features"] for e in evals})
    tests = sorted({e["num_test_features"] for e in evals})
    cfgs = [r["config"]["eval"] for r in records.values() if "config" in r]
    k = sorted({c["knn_k"] for c in cfgs})
    temp = sorted({c["knn_temperature"] for c in cfgs})
    epochs = sorted({c["linear_epochs"] for c in cfgs})
    join = lambda xs: "/".join(str(x) for x in xs) or "?"
    return (
        f"Accuracies in percent on {join(tests)} test images. kNN: k = {join(k)}, T = "
        f"{join(temp)}, cosine similarity of frozen backbone features, bank = {join(banks)} "
        "training images. Linear: logistic regression on standardised frozen features of the "
        f"same images, {join(epochs)} epochs of SGD with momentum and a cosine schedule. std, "
        "eff. rank, alignment, uniformity: collapse monitors of the backbone features on up to "
        "2048 test images (alignment between two augmented views). Baselines use the same "
        "encoder as the methods they sit next to."
    )


def write_markdown(path: Path, records: dict[str, dict], *, header: dict) -> None:
    """The human-readable report (see the module docstring)."""
    env = header["environment"]
    lines = [
        f"# {header['title']}",
        "",
        header["summary"],
        "",
        *_table(records),
        "",
        _protocol_text(records),
        "",
    ]
    if "raw_pixels" in records:
        lines += _pixel_section(records["raw_pixels"])
    lines += _settings_section(records)
    lines += header.get("notes", [])
    lines += [
        "## Figures",
        "",
        f"`{header['figures']}/`: `curves.png` (training curves of every run), "
        "`align_uniform.png` (alignment-uniformity plane, every run), `<run>_tsne.png` "
        "(t-SNE of test features) and `<run>_neighbours.png` (nearest training images of 8 "
        "test queries).",
        "",
        "## Machine and command",
        "",
        *_machines(records),
        f"- report built: {env['date']} on {env['machine']} (JAX devices: {env['devices']}; "
        f"platform {env['platform']})",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        "- commands that produced the records:",
        *[f"  - `{c}`" for c in sorted({r.get("command", "?") for r in records.values()})],
        "",
    ]
    path.write_text("\n".join(lines))


def _machines(records: dict[str, dict]) -> list[str]:
    """One line per machine the records were trained on, with the runs it trained."""
    runs: dict[str, list[str]] = {}
    for name, r in records.items():
        runs.setdefault(r.get("machine", "not recorded"), []).append(name)
    if len(runs) == 1:
        return [f"- machine: {next(iter(runs))} (every record)"]
    return [f"- machine {m}: {', '.join(sorted(names))}" for m, names in sorted(runs.items())]


def _runs_with_curves(records: dict[str, dict]) -> list[dict]:
    return [
        r
        for kind in ("method", "supervised")
        for r in _by_kind(records, kind)
        if r.get("curve", {}).get("step")
    ]


def plot_curves(records: dict[str, dict], out: Path) -> Path | None:
    """One panel per logged scalar, one line per run, x = fraction of the run; the loss is
    divided by its first logged value (methods' losses have different scales)."""
    runs = _runs_with_curves(records)
    if not runs:
        return None
    fig = Figure(figsize=(15, 8), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, key in zip(axes, CURVE_KEYS, strict=True):
        for r in runs:
            c = r["curve"]
            pts = [(s, v) for s, v in zip(c["step"], c[key], strict=True) if v is not None]
            if not pts:
                continue
            s, v = np.array(pts, np.float64).T
            if key == "loss" and v[0] != 0:
                v = v / abs(v[0])
            ax.plot(s / max(r["steps"], 1), v, label=r["name"], lw=1.2)
        ax.set_title("loss / first loss" if key == "loss" else key, fontsize=10)
        ax.set_xlabel("fraction of the run")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    return _save(fig, out)


def plot_alignment_uniformity(records: dict[str, dict], out: Path) -> Path | None:
    """Every run on the alignment-uniformity plane (Wang & Isola 2020, Fig. 5), coloured by
    kNN top-1."""
    pts = [
        r
        for r in records.values()
        if all(isinstance(r.get(k), int | float) for k in ("alignment", "uniformity", "knn_top1"))
    ]
    if not pts:
        return None
    fig = Figure(figsize=(7, 5.5), layout="constrained")
    ax = fig.subplots()
    x = [r["uniformity"] for r in pts]
    y = [r["alignment"] for r in pts]
    sc = ax.scatter(x, y, c=[r["knn_top1"] for r in pts], cmap="viridis", s=60, edgecolors="k")
    fig.colorbar(sc, ax=ax, label="kNN top-1 (%)")
    for r, xi, yi in zip(pts, x, y, strict=True):
        ax.annotate(r["name"], (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("uniformity (lower: more uniform)")
    ax.set_ylabel("alignment (lower: views closer)")
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    return _save(fig, out)


def _save(fig: Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    return out


def rebuild(out_dir: Path, stem: str, *, header: dict) -> dict[str, Path]:
    """Rebuilds ``<stem>.json``, ``<stem>.md`` and the figures from ``<stem>/*.json``."""
    records = load_records(out_dir / stem)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md"}
    write_json(paths["json"], combined_rows(records))
    write_markdown(paths["md"], records, header={**header, "figures": f"{stem}"})
    for name, fn in (("curves", plot_curves), ("align_uniform", plot_alignment_uniformity)):
        p = fn(records, out_dir / stem / f"{name}.png")
        if p is not None:
            paths[name] = p
    return paths
