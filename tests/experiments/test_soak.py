"""``experiments/soak.py`` for two tiny epochs: records, figure, summary, checkpoints.

The long run itself (hours, CIFAR-10) is not a test; its output is committed under
``experiments/results/soak``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from experiments import soak

ROOT = Path(__file__).resolve().parents[2]


def test_rss_reading_matches_proc_status():
    rss, peak = soak.rss_bytes()
    status = Path("/proc/self/status").read_text()
    vm = {k: int(v.split()[0]) * 1024 for k, _, v in (x.partition(":") for x in status.splitlines())
          if k in ("VmRSS", "VmHWM")}  # fmt: skip
    # Same process, read a moment apart: equal up to a few MiB of allocation in between.
    assert abs(rss - vm["VmRSS"]) < 16 * 2**20 and rss > 50 * 2**20
    assert peak >= rss - 16 * 2**20 and abs(peak - vm["VmHWM"]) < 16 * 2**20


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
