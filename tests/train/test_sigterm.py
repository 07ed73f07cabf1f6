"""SIGTERM during training (a preempted TPU/GPU job): checkpoint saved, clean exit, resumable."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.xla_flags import xla_flags

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_then_exits(cifar_subset_dir, tiny_data_dir, tmp_path):
    workdir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "ssl_jax.main",
        "--config", "experiments/configs/simclr_cifar10.py:tiny",
        "--workdir", str(workdir),
        f"--config.data.dataset=folder:{cifar_subset_dir}",
        f"--config.data.data_dir={tiny_data_dir}",
        "--config.train.num_steps=100000",
        "--config.train.checkpoint_every=100000",
    ]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS=xla_flags(2))  # signals, not sharding: 2 devices compile less
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "termination signal" in out
    steps = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(steps) == 1 and 2 <= steps[0] < 100000, steps
