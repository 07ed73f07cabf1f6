"""``experiments/soak.py`` for two tiny epochs: records, figure, summary, checkpoints.

The long run itself (hours, CIFAR-10) is not a test; its output is committed under
``experiments/results/soak``.
"""

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import soak

ROOT = Path(__file__).resolve().parents[2]
# glibc's malloc serves this process (and the script's): its heap figures are recorded.
GLIBC_HEAP = soak.heap_mib()["heap_in_use_mib"] is not None


def test_rss_reading_matches_proc_status():
    rss, peak = soak.rss_bytes()
    status = Path("/proc/self/status").read_text()
    vm = {k: int(v.split()[0]) * 1024 for k, _, v in (x.partition(":") for x in status.splitlines())
          if k in ("VmRSS", "VmHWM")}  # fmt: skip
    # Same process, read a moment apart: equal up to a few MiB of allocation in between.
    assert abs(rss - vm["VmRSS"]) < 16 * 2**20 and rss > 50 * 2**20
    assert peak >= rss - 16 * 2**20 and abs(peak - vm["VmHWM"]) < 16 * 2**20


def test_rss_parts_add_up_to_the_rss():
    parts = soak.rss_parts_mib()
    rss = soak.rss_bytes()[0] / 2**20
    # RssAnon + RssFile + RssShmem = VmRSS; shared memory is a few MiB at most here.
    assert parts["rss_anon_mib"] > 10 and parts["rss_file_mib"] > 10
    assert abs(parts["rss_anon_mib"] + parts["rss_file_mib"] - rss) < 16


def test_heap_in_use_follows_a_malloc_and_its_free():
    if soak.LIBC is None or not soak.allocator().startswith("glibc"):
        # Not glibc (e.g. musl, macOS) or another malloc preloaded: no figures to check.
        assert soak.heap_mib() == {"heap_in_use_mib": None, "heap_free_mib": None}
        return
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = soak.heap_mib()["heap_in_use_mib"]
    ptr = libc.malloc(96 * 2**20)
    assert ptr
    try:
        during = soak.heap_mib()["heap_in_use_mib"]
    finally:
        libc.free(ptr)
    after = soak.heap_mib()["heap_in_use_mib"]
    # The 96 MiB block is counted while held (mmapped: hblkhd) and not after its free.
    assert abs(during - before - 96) < 2 and abs(after - before) < 2


def test_allocator_names_a_preloaded_malloc_and_glibc_arenas(monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert soak.allocator() == "glibc malloc"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert soak.allocator() == "glibc malloc, MALLOC_ARENA_MAX=2"
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.pthread.rseq=0:glibc.malloc.mmap_max=0")
    assert soak.allocator() == "glibc malloc, mmap_max=0"
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert soak.allocator() == "jemalloc (LD_PRELOAD)"


@pytest.mark.slow
def test_two_tiny_epochs_write_records_figure_and_summary(
    cifar_subset_dir, tiny_data_dir, tmp_path
):
    out = tmp_path / "out"
    niceness = min(19, os.nice(0) + 1)
    # A subprocess, as the script is meant to run (it renices itself), on one CPU device
    # with cheap code generation: compiling is most of the cost here. One step nicer
    # than this test, not the default 19: at 19 it waited behind the other test worker for
    # most of 10 minutes.
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
        JAX_PLATFORMS="cpu",
    )
    run = subprocess.run(
        [
            sys.executable, "experiments/soak.py",
            "--minutes", "30",
            "--max-epochs", "3",
            "--dataset", f"folder:{cifar_subset_dir}",
            "--data-dir", str(tiny_data_dir),
            "--batch-size", "16",
            "--train-examples", "32",
            "--checkpoint-every", "4",
            "--eval-bank", "64",
            "--eval-queries", "32",
            "--workdir", str(tmp_path / "work"),
            "--out", str(out),
            "--nice", str(niceness),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    result = json.loads(run.stdout[run.stdout.index("{") :])  # the printed summary
    saved = json.loads((out / "rss.json").read_text())
    assert saved["summary"] == result
    assert saved["settings"]["nice"] == niceness  # it lowered its own priority
    records = saved["records"]
    assert [r["epoch"] for r in records] == [1, 2, 3] and [r["step"] for r in records] == [2, 4, 6]
    for r in records:
        assert r["rss_mib"] > 50 and r["peak_rss_mib"] >= r["rss_mib"] - 16
        assert r["step_s"] > 0 and r["live_arrays"] > 0 and np.isfinite(r["loss"])
        assert 0 <= r["knn_top1"] <= 100
        assert r["rss_anon_mib"] > 0 and r["rss_file_mib"] > 0 and r["python_objects"] > 1000
        if GLIBC_HEAP:
            assert 0 < r["heap_in_use_mib"] < r["rss_mib"] and r["heap_free_mib"] >= 0
    # Step 4 (every 4 steps, asynchronously) and the final state.
    assert sorted(int(p.name) for p in (tmp_path / "work" / "checkpoints").iterdir()) == [4, 6]
    rss = np.array([r["rss_mib"] for r in records])
    summary = saved["summary"]
    assert summary["epochs"] == 3 and summary["steps"] == 6
    assert summary["rss_slope_mib_per_epoch_second_half"] == round(
        float(np.polyfit([2, 3], rss[1:], 1)[0]), 4
    )
    assert (out / "rss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "soak.md").read_text()
    assert "3 epochs, 6 steps" in md and "rss.png" in md
    assert saved["settings"]["allocator"] == soak.allocator()  # the child had this env
    assert f"Allocator: {soak.allocator()}." in md
    if GLIBC_HEAP:
        heap = np.array([r["heap_in_use_mib"] for r in records])
        assert summary["heap_in_use_first_last_mib"] == [heap[0], heap[-1]]
        assert summary["heap_in_use_slope_mib_per_epoch_second_half"] == round(
            float(np.polyfit([2, 3], heap[1:], 1)[0]), 4
        )
    # --compare plots saved runs together without training.
    soak.main(["--compare", str(out / "rss.json"), str(out / "rss.json"), "--out", str(out)])
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
