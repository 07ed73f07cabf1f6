"""Writes ``README.md`` and the plots from a finished ``run.py`` run (``details.json``).

PYTHONPATH=. python experiments/bench/report.py [--out DIR]
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
STATIC = HERE / "README.template.md"


NOT_YET = ["(not measured yet: the run stopped before this part; `run.py --resume` adds it)"]


def _f(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _took(run: dict) -> str:
    if run.get("duration_min") is not None:
        last = "last sitting" if len(run.get("sittings") or []) > 1 else "run"
        return f"{last} took {run['duration_min']:.0f} min"
    return f"interrupted run, {len(run.get('missing', []))} measurements still to make"


def _label(key: str) -> str:
    """``'step {"batch": 64, "case": "x", ...} {}'`` -> ``'step x b64'``."""
    kind, rest = key.split(" ", 1)
    args = json.JSONDecoder().raw_decode(rest)[0]
    what = args.get("case") or args.get("method") or ""
    extra = [f"b{args['batch']}"] if "batch" in args else []
    extra += [f"dim {args['dim']}"] if "dim" in args else []
    return " ".join(x for x in (kind, what, *extra) if x)


def _machine(m: dict) -> str:
    isa = f" ({', '.join(m['isa'])})" if m.get("isa") else ""
    return f"{m['cpu']}{isa}, {m['cores']} cores usable, {m['memory_gib']:.0f} GiB"


def _sittings(run: dict) -> list[str]:
    """The sittings of a resumed run, each with what it measured (``details.json`` stamps
    every measurement with its time and commit) and, where recorded, on which machine."""
    sittings = run.get("sittings") or []
    if len(sittings) < 2:
        return []
    stamps = run.get("stamps") or {}
    first_stamp = min((v["utc"] for v in stamps.values()), default="~")
    lines = [f"- measured in {len(sittings)} sittings (`--resume`):"]
    for i, s in enumerate(sittings):
        end = sittings[i + 1]["date"] if i + 1 < len(sittings) else "~"
        made = [_label(k) for k, v in stamps.items() if s["date"] <= v["utc"] < end]
        if made:
            what = f"{len(made)}: " + ", ".join(made)
        elif end <= first_stamp:  # unstamped: from the sittings before stamping began
            what = "the rest"
        else:  # stamped then, every measurement taken again since
            what = "none kept (all measured again later)"
        on = f" on {_machine(s['machine'])}" if "machine" in s else ""
        lines.append(
            f"  - {s['date']}, commit {s['commit']}{on}: `{s['command']}`; measured {what}"
        )
    return lines


def _machine_line(run: dict) -> str:
    """The machine of the last sitting; named as such when the sittings' machines differ."""
    m = run["machine"]
    cpus = {_machine(s["machine"]) for s in run.get("sittings") or [] if "machine" in s}
    which = "machine of the last sitting" if len(cpus | {_machine(m)}) > 1 else "machine"
    load = ", ".join(f"{x:.1f}" for x in m["load_average"])
    return f"- {which}: {_machine(m)}; load average at start {load}"


def results_table(run: dict) -> list[str]:
    lines = [
        "| case | batch | ssl_jax steps per call | ssl_jax step (s) | PyTorch step (s) "
        "| PyTorch layout | ratio jax/torch | ssl_jax images/s | PyTorch images/s | NCHW (s) "
        "| channels-last (s) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for d in run["steps"]:
        t = d["timings"]
        lines.append(
            f"| {d['case']} | {d['batch']} | {d.get('steps_per_call', 1)} "
            f"| {_f(d['jax_step_s'])} | {_f(d['torch_step_s'])} "
            f"| {'channels-last' if d['torch_best'] == 'torch_cl' else 'NCHW'} "
            f"| **{d['ratio']:.2f}** | {d['images_per_s']['jax']:.0f} "
            f"| {d['batch'] / d['torch_step_s']:.0f} | {_f(t['torch']['median_s'])} "
            f"| {_f(t['torch_cl']['median_s'])} |"
        )
    met = sum(d["ratio"] <= 1 for d in run["steps"])
    lines += [
        "",
        f"Target (issue 6): ssl_jax at or below PyTorch's step time in every case; met in "
        f"{met} of {len(run['steps'])}.",
    ]
    return lines


def speedup_table(run: dict) -> list[str]:
    """Change 1: its before/after, then the rows measured with the XLA-defaults contender."""
    lines = before_after_table(run, "xla_options", "XLA defaults", "ssl_jax options")
    rows = [d for d in run["steps"] if "jax_xla_default" in d["timings"]]
    if not rows:
        return lines
    lines += [
        "",
        "Rows of the results table that were measured with the XLA-defaults contender:",
        "",
        "| case | batch | steps per call | XLA defaults (s) | ssl_jax options (s) | speed-up "
        "| ratio to PyTorch before -> after |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for d in rows:
        before = d["timings"]["jax_xla_default"]["median_s"]
        after = d["jax_step_s"]
        lines.append(
            f"| {d['case']} | {d['batch']} | {d.get('steps_per_call', 1)} | {_f(before)} "
            f"| {_f(after)} | {before / after:.2f}x "
            f"| {before / d['torch_step_s']:.2f} -> {after / d['torch_step_s']:.2f} |"
        )
    return lines


def before_after_table(run: dict, key: str, before: str, after: str) -> list[str]:
    r = run.get(key)
    if not r:
        return NOT_YET
    # XLA's cost analysis counts a compiled call, which may run several steps.
    k = r.get("steps_per_call", {"before": 1, "after": 1})
    gflop = {side: r["xla_flops"][side] / k[side] / 1e9 for side in ("before", "after")}
    return [
        f"| case | batch | {before} (s) | {after} (s) | speed-up | GFLOP per step before / after |",
        "|---|---:|---:|---:|---:|---|",
        f"| {r['case']} | {r['batch']} | {_f(r['before_s'])} | {_f(r['after_s'])} "
        f"| {r['before_s'] / r['after_s']:.2f}x | {gflop['before']:.1f} / {gflop['after']:.1f} |",
    ]


def steps_per_call_table(run: dict) -> list[str]:
    """The steps-per-call before/after, with what it is about: page faults and scratch."""
    r = run.get("steps_per_call")
    if not r:
        return NOT_YET
    t, k = r["timings"], r["steps_per_call"]
    temp = r["xla_temp_mib"]
    return [
        f"| case | batch | 1 step per call (s) | {k['after']} steps per call (s) | speed-up "
        "| faults per step | kernel CPU per step (s) | XLA temp (MiB) |",
        "|---|---:|---:|---:|---:|---|---|---|",
        f"| {r['case']} | {r['batch']} | {_f(r['before_s'])} | {_f(r['after_s'])} "
        f"| {r['before_s'] / r['after_s']:.2f}x "
        f"| {t['before']['minor_faults'] / 1e3:.0f}k -> {t['after']['minor_faults'] / 1e3:.0f}k "
        f"| {t['before']['sys_s']:.2f} -> {t['after']['sys_s']:.2f} "
        f"| {temp['before']:.0f} -> {temp['after']:.0f} |",
    ]


def memory_table(run: dict) -> list[str]:
    lines = [
        "| case | batch | ssl_jax RSS added (MiB) | XLA defaults RSS added | PyTorch NCHW | "
        "PyTorch channels-last | XLA temp (MiB) | compile (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in run["steps"]:
        m = d["peak_added_mib"]
        lines.append(
            f"| {d['case']} | {d['batch']} | {m['jax']:.0f} "
            f"| {_f(m.get('jax_xla_default'), 0)} "
            f"| {m['torch']:.0f} | {m['torch_cl']:.0f} | "
            f"{d['xla_memory']['jax']['xla_temp_mib']:.0f} | {d['compile_s']['jax']:.0f} |"
        )
    return lines


def eval_options_table(run: dict) -> list[str]:
    r = run.get("eval_options")
    if not r:
        return NOT_YET
    return [
        "| encoder | batch | images | XLA defaults (s) | step options (s) | speed-up "
        "| images/s after |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| {r['encoder']} | {r['batch']} | {r['images']} | {_f(r['before_s'])} "
        f"| {_f(r['after_s'])} | {r['before_s'] / r['after_s']:.2f}x "
        f"| {r['images'] / r['after_s']:,.0f} |",
    ]


def jitter_table(run: dict) -> list[str]:
    if not run["input"]["jitter"]:
        return NOT_YET
    lines = ["| recipe | views | variant | batch | images/s |", "|---|---|---|---:|---:|"]
    for r in run["input"]["jitter"]:
        lines.append(
            f"| {r['recipe']} | {r['views']} | {r['variant']} | {r['batch']} "
            f"| {r['images_per_s']:,.0f} |"
        )
    return lines


def pipeline_table(run: dict) -> list[str]:
    if not run["input"]["pipeline"] and not run["input"]["device_views"]:
        return NOT_YET
    lines = ["| data | recipe | views | path | batch | images/s |", "|---|---|---|---|---:|---:|"]
    for r in run["input"]["pipeline"]:
        lines.append(
            f"| {r['data']} | {r['recipe']} | {r['views']} | {r['path']} | {r['batch']} "
            f"| {r['images_per_s']:,.0f} |"
        )
    lines += [
        "",
        "| train step (consumer) | batch | images/s consumed | augmentation share of "
        "the library's default step (views made inside it) |",
        "|---|---:|---:|---:|",
    ]
    for r in run["input"]["device_views"]:
        # The rate and the share come from one measurement, so from one machine and sitting.
        rate = r["batch"] / r["given_views_step_s"]
        lines.append(
            f"| {r['case']} | {r['batch']} | {rate:.0f} | {100 * r['augmentation_share']:.1f}% |"
        )
    return lines


def profile_table(run: dict) -> list[str]:
    p = run.get("profile")
    if not p:
        return NOT_YET
    ms = p["ms_per_step"]
    names = ("xla_default", "tuned")
    kinds = sorted(
        set(ms["tuned"]) | set(ms["xla_default"]), key=lambda k: -ms["xla_default"].get(k, 0)
    )
    lines = [
        f"{p['case']}, batch {p['batch']}, ms per step summed over the trace events of "
        "XLA:CPU's thunks (an asynchronous thunk's event covers only its launch):",
        "",
        "| kind of operation | XLA defaults | ssl_jax options |",
        "|---|---:|---:|",
    ]
    for k in kinds:
        lines.append(f"| {k} | {ms['xla_default'].get(k, 0):.0f} | {ms['tuned'].get(k, 0):.0f} |")
    tot = [sum(ms[k].values()) for k in names]
    lines.append(f"| sum of traced thunks | {tot[0]:.0f} | {tot[1]:.0f} |")
    if "wall_ms" in p:  # recorded by sittings from 2026-12-01 on
        wall = [p["wall_ms"][k] for k in names]
        lines.append(f"| step wall time (under the profiler) | {wall[0]:.0f} | {wall[1]:.0f} |")
    return lines


def scaling_tables(run: dict) -> list[str]:
    s = run["scaling"]
    if not s["devices"] and not s["embedding"]:
        return NOT_YET
    lines = [
        "Devices (same cores split into N XLA CPU devices, fixed global batch):",
        "",
        "| devices | case | batch | step (s) | compile (s) | RSS added (MiB) | XLA temp (MiB) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in s["devices"]:
        lines.append(
            f"| {r['devices']} | {r['case']} | {r['batch']} | {_f(r['step_s'])} | "
            f"{r['compile_s']:.0f} | {r['peak_added_mib']:.0f} | {r['xla_temp_mib']:.0f} |"
        )
    lines += [
        "",
        "Embedding dimension D (3-layer D-wide projector on the ConvNet):",
        "",
        "| method | D | batch | ssl_jax step (s) | PyTorch step (s) | ssl_jax RSS added (MiB) "
        "| PyTorch RSS added (MiB) | XLA temp (MiB) | params+state in (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in s["embedding"]:
        lines.append(
            f"| {r['method']} | {r['dim']} | {r['batch']} | {_f(r['jax_step_s'])} | "
            f"{_f(r.get('torch_step_s'))} | {r['jax_peak_added_mib']:.0f} | "
            f"{_f(r.get('torch_peak_added_mib'), 0)} | {r['jax_xla_temp_mib']:.0f} | "
            f"{r['jax_xla_args_mib']:.0f} |"
        )
    return lines


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def _batch_plot(rows_all: list[dict], out: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for case in sorted({r["case"] for r in rows_all}):
        rows = sorted((r for r in rows_all if r["case"] == case), key=lambda r: r["batch"])
        b = [r["batch"] for r in rows]
        for key, style in (("jax", "-o"), ("torch", "--s"), ("torch_cl", ":^")):
            label = {"jax": "ssl_jax", "torch": "PyTorch NCHW", "torch_cl": "PyTorch CL"}[key]
            axes[0].plot(
                b, [r["timings"][key]["median_s"] for r in rows], style, label=f"{case} {label}"
            )
            axes[1].plot(
                b, [r["peak_added_mib"][key] for r in rows], style, label=f"{case} {label}"
            )
    for ax, title in zip(axes, ("step time (s)", "RSS added during a step (MiB)"), strict=True):
        ax.set(xscale="log", yscale="log", xlabel="batch (images per view)", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, out, "batch_scaling.png")


def _device_plot(rows: list[dict], out: Path) -> str:
    dev = sorted(rows, key=lambda r: r["devices"])
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    n = [r["devices"] for r in dev]
    ax.plot(n, [r["step_s"] for r in dev], "-o", label="step (s)")
    ax.plot(n, [r["compile_s"] for r in dev], "--s", label="compile (s)")
    ax.set(xscale="log", xlabel="XLA CPU devices (same cores)", title=dev[0]["case"])
    ax.set_xticks(n, [str(k) for k in n])
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, out, "device_scaling.png")


def _embedding_plot(emb: list[dict], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method in sorted({r["method"] for r in emb}):
        rows = sorted((r for r in emb if r["method"] == method), key=lambda r: r["dim"])
        d = [r["dim"] for r in rows]
        ax.plot(d, [r["jax_peak_added_mib"] for r in rows], "-o", label=f"{method} ssl_jax")
        if "torch_peak_added_mib" in rows[0]:
            ax.plot(d, [r["torch_peak_added_mib"] for r in rows], "--s", label=f"{method} PyTorch")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="embedding dimension D",
        ylabel="RSS added during a step (MiB)",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, out, "embedding_memory.png")


def plots(run: dict, out: Path) -> list[str]:
    """The scaling plots that the run has data for; returns their file names."""
    out.mkdir(parents=True, exist_ok=True)
    s = run["scaling"]
    makers = (
        (_batch_plot, s["batch"]),
        (_device_plot, s["devices"]),
        (_embedding_plot, s["embedding"]),
    )
    return [make(rows, out) for make, rows in makers if rows]


def cpu_split_table(out: Path) -> list[str]:
    """``cpu_split.py``'s CPU seconds per step by kind of code, one row per case and side."""
    path = out / "cpu_split.json"
    if not path.exists():
        return ["(not measured yet: `cpu_split.py` writes `cpu_split.json`)"]
    from experiments.bench.cpu_split import KINDS

    rows = [
        f"| case | side | step (s) | CPU (s) | {' | '.join(KINDS)} | measured |",
        "|---|---|---:|---:|" + "---:|" * len(KINDS) + "---|",
    ]
    for key, r in json.loads(path.read_text()).items():
        for side, d in r["sides"].items():
            cpu = " | ".join(_f(d["cpu_s_per_step"][k], 2) for k in KINDS)
            rows.append(
                f"| {key} | {side} | {_f(d['step_s'])} | {_f(d['total_cpu_s_per_step'], 2)} "
                f"| {cpu} | {r['date']}, {_machine(r['machine'])} |"
            )
    return rows


def write(run: dict, out: Path) -> None:
    m = run["machine"]
    plot_names = plots(run, out / "plots")
    generated = {
        "MACHINE": [
            f"- date: {run['date']} ({_took(run)})",
            f"- command: `{run['command']}`",
            *_sittings(run),
            _machine_line(run),
            f"- versions: python {m['python']}, jax {m['jax']}, jaxlib {m['jaxlib']}, flax "
            f"{m['flax']}, optax {m['optax']}, torch {m['torch']} (threads: {m['threads']}), "
            f"numpy {m['numpy']}",
        ],
        "RESULTS": results_table(run),
        "SPEEDUP_XLA": speedup_table(run),
        "SPEEDUP_JITTER": jitter_table(run),
        "SPEEDUP_SMALL_MAP": before_after_table(run, "small_map", "XLA convolution", "GEMM form"),
        "SPEEDUP_MAX_POOL": before_after_table(run, "max_pool", "`nn.max_pool`", "`max_pool_2x2`"),
        "SPEEDUP_WEIGHT_GRAD": before_after_table(
            run, "weight_grad", "fused weight gradients", "barrier"
        ),
        "SPEEDUP_BATCH_NORM": before_after_table(
            run, "batch_norm", "`nn.BatchNorm` + `nn.relu`", "`batch_norm.BatchNorm`"
        ),
        "SPEEDUP_RELU_AFTER_POOL": before_after_table(
            run, "relu_after_pool", "ReLU before the pool", "ReLU after the pool"
        ),
        "SPEEDUP_POOL_SELECTS": before_after_table(
            run, "pool_selects", "`jnp.maximum` + `nn.relu`", "selects, ReLU folded in"
        ),
        "SPEEDUP_CHANNEL_ZERO": before_after_table(
            run, "channel_zero", "constant zeros", "per-channel zeros"
        ),
        "SPEEDUP_YNN_DOTS": before_after_table(run, "ynn_dots", "Eigen dots", "YNNPACK dots"),
        "SPEEDUP_STRIDED_CONV": before_after_table(
            run, "strided_conv", "`lhs_dilation` (XLA)", "by phases"
        ),
        "SPEEDUP_MAP_MATRIX": before_after_table(run, "map_matrix", "im2col", "map matrix"),
        "SPEEDUP_EVAL_OPTIONS": eval_options_table(run),
        "SPEEDUP_SELECT_RELU": before_after_table(
            run, "select_relu", "`max` ReLU without autodiff", "select ReLU without autodiff"
        ),
        "CPU_SPLIT": cpu_split_table(out),
        "SPEEDUP_SWAV_CODES": before_after_table(
            run, "swav_codes_cond", "whole loss under `lax.cond`", "codes only under `lax.cond`"
        ),
        "SPEEDUP_STEPS_PER_CALL": steps_per_call_table(run),
        "MEMORY": memory_table(run),
        "PROFILE": profile_table(run),
        "SCALING": scaling_tables(run),
        "PLOTS": [f"![{n}](plots/{n})" for n in plot_names] or NOT_YET,
        "INPUT": pipeline_table(run),
    }
    text = STATIC.read_text()
    for key, lines in generated.items():
        text = text.replace(f"<!-- {key} -->", "\n".join(lines))
    (out / "README.md").write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(HERE))
    a = p.parse_args()
    out = Path(a.out)
    write(json.loads((out / "details.json").read_text()), out)


if __name__ == "__main__":
    main()
