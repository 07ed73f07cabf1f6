"""Where each side's CPU time per step goes, by kind of code, sampled with Linux ``perf``.

    PYTHONPATH=. python experiments/bench/cpu_split.py --case simclr_resnet18 --batch 64

For each side (ssl_jax's step as the training loop compiles it; the PyTorch peer, channels
last by default), a child process builds the step, runs two warm-up calls, then ``--calls``
timed calls while ``perf record`` samples every thread of it at ``--freq`` Hz of CPU time.
Samples are sorted into the kinds below by the shared object and symbol they fell in and
turned into CPU seconds per step. The sides run one after the other, not interleaved: the
step times printed beside the split are for orientation; ``step_bench.py`` is the
comparison.

Kinds: ``jit_code`` (code generated at run time, in anonymous memory: oneDNN's GEMM and
convolution kernels on both sides, which Eigen's contractions call in XLA:CPU, and
XLA's compiled loops on ssl_jax's), ``eigen_pack`` (Eigen copying operands, and a
convolution's image patches, into GEMM blocks), ``eigen_other``, ``ynnpack_dot``,
``ynnpack_other`` (YNNPACK's element-wise and reduction kernels, its slinky scheduler),
``onednn_host`` (oneDNN code compiled ahead of time), ``threading`` (OpenMP, TSL and Eigen
thread pools, spinning and waking), ``kernel`` (the Linux kernel: page faults, futexes),
``libc`` (memcpy, memset, malloc), ``framework`` (the rest of libtorch, libjax_common,
Python).

Needs ``perf`` and permission to sample one's own processes
(``/proc/sys/kernel/perf_event_paranoid`` <= 2). Writes ``cpu_split.json`` (``--out``).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

KINDS = (
    "jit_code",
    "eigen_pack",
    "eigen_other",
    "ynnpack_dot",
    "ynnpack_other",
    "onednn_host",
    "threading",
    "kernel",
    "libc",
    "framework",
)
_LINE = re.compile(r"^\s*[\d.]+%\s+(\d+)\s+(.*?)\s+\[([.k])\]\s+(.*?)\s*$")
_THREADING = re.compile(r"gomp|ThreadPool|tsl::|Worker|futex|sched_yield|spin|pthread")
_TEMPLATE_ARGS = re.compile(r"<[^<>]*>")


def _bare(sym: str) -> str:
    """A C++ symbol without its template arguments (``Eigen::ThreadPoolDevice`` appears in
    the arguments of every Eigen kernel that runs on the pool)."""
    while True:
        bare = _TEMPLATE_ARGS.sub("", sym)
        if bare == sym:
            return bare
        sym = bare


def kind(dso: str, sym: str) -> str:
    """The kind of code a sample fell in, from its shared object and symbol."""
    if "[JIT]" in dso or "perf-" in dso or dso == "[unknown]" or dso.startswith("//anon"):
        return "jit_code"
    if dso.startswith("[kernel"):
        return "kernel"
    sym = _bare(sym)
    if "libgomp" in dso or _THREADING.search(sym):
        return "threading"
    if sym.startswith("Eigen::internal::gemm_pack"):
        return "eigen_pack"
    if sym.startswith("Eigen::"):
        return "eigen_other"
    if sym.startswith("ynn::dot"):
        return "ynnpack_dot"
    if sym.startswith(("ynn::", "slinky::")):
        return "ynnpack_other"
    if "dnnl::" in sym:
        return "onednn_host"
    if dso.startswith(("libc.so", "libm.so")):
        return "libc"
    return "framework"


def split(report: str, freq: int, steps: int) -> dict:
    """``perf report --sort dso,sym -n`` text -> CPU seconds per step by kind, and the top
    symbols."""
    by_kind, by_sym = dict.fromkeys(KINDS, 0.0), {}
    for line in report.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        samples, dso, _, sym = m.groups()
        s, k = int(samples) / freq / steps, kind(dso, sym)
        by_kind[k] += s
        name = "[JIT]" if k == "jit_code" else f"{dso}: {sym[:100]}"
        by_sym[name] = by_sym.get(name, 0.0) + s
    top = sorted(by_sym.items(), key=lambda kv: -kv[1])[:12]
    return dict(
        cpu_s_per_step=by_kind,
        total_cpu_s_per_step=sum(by_kind.values()),
        top=[[name, s] for name, s in top],
    )


def child(side: str, case: str, batch: int, calls: int, ready: str, go: str) -> None:
    """Builds one side's step, warms it up, waits for ``go`` and runs ``calls`` calls."""
    import torch

    from experiments.bench import cases, jax_side, step_bench
    from experiments.bench.torch_ref.methods import Peer

    torch.set_num_threads(step_bench.threads())
    c = cases.get(case).config(batch)
    views, labels = jax_side.make_views(c)
    k = jax_side.loop_steps_per_call(c)
    if side == "jax":
        fn = jax_side.JaxCase(c, steps_per_call=k).setup(views, labels).step
    else:
        n = jax_side.NUM_TRAIN_EXAMPLES
        peer = Peer(c, channels_last=side == "torch_cl", num_train_examples=n)
        tv, tl = peer.to_torch(views), torch.from_numpy(labels).long()

        def fn():
            for _ in range(k):
                peer.step(tv, tl)

    fn()
    fn()
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.05)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    print(json.dumps(dict(steps=calls * k, wall_s=time.perf_counter() - t0)))


def measure(side: str, case: str, batch: int, calls: int, freq: int) -> dict:
    """Runs the child for ``side`` under ``perf record`` and splits its samples."""
    with tempfile.TemporaryDirectory() as tmp:
        ready, go, data = (os.path.join(tmp, n) for n in ("ready", "go", "perf.data"))
        args = [sys.executable, __file__, "--child", side, "--case", case, "--batch", str(batch)]
        args += ["--calls", str(calls), "--ready", ready, "--go", go]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        while not os.path.exists(ready):
            if proc.poll() is not None:
                raise RuntimeError(f"{side}: the step process exited ({proc.returncode})")
            time.sleep(0.2)
        perf = subprocess.Popen(
            ["perf", "record", "-F", str(freq), "-p", str(proc.pid), "-o", data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # perf attaches to every thread before the timed calls start
        Path(go).touch()
        out, _ = proc.communicate()
        perf.wait()
        if proc.returncode or perf.returncode:
            raise RuntimeError(f"{side}: step process {proc.returncode}, perf {perf.returncode}")
        timed = json.loads(out.strip().splitlines()[-1])
        report = subprocess.run(
            [
                *("perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "-n"),
                *("--stdio", "-g", "none"),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return dict(step_s=timed["wall_s"] / timed["steps"], **split(report, freq, timed["steps"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", default="simclr_resnet18")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--sides", default="jax,torch_cl", help="of jax, torch, torch_cl")
    p.add_argument("--calls", type=int, default=3, help="timed calls (of the loop's steps)")
    p.add_argument("--freq", type=int, default=999, help="samples per CPU second")
    p.add_argument("--out", default=str(Path(__file__).parent / "cpu_split.json"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--ready", help=argparse.SUPPRESS)
    p.add_argument("--go", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.child, a.case, a.batch, a.calls, a.ready, a.go)
    from experiments.bench import run

    sides = {s: measure(s, a.case, a.batch, a.calls, a.freq) for s in a.sides.split(",")}
    for side, r in sides.items():
        cpu = ", ".join(f"{k} {v:.3f}" for k, v in r["cpu_s_per_step"].items() if v >= 0.005)
        print(f"{side}: step {r['step_s']:.3f} s, CPU {r['total_cpu_s_per_step']:.3f} s: {cpu}")
    out = Path(a.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results[f"{a.case}_b{a.batch}"] = dict(
        sides=sides, machine=run.machine(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    )
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
