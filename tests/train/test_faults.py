"""Faults during training: kill -9 (also inside a checkpoint write), damaged checkpoints, a
full disk, an unwritable work dir, and NaN batches.

The subprocess tests run ``python -m ssl_jax.main`` on the tiny SimCLR config (ConvNet, 2
fake CPU devices, 10 steps, a checkpoint every 2) and compare every array of the final
checkpoint, and the metrics of every step, with one uninterrupted run: they must be
bit-identical. The runs share a JAX compilation cache, so only the first one compiles.

Ways to hit a fault deterministically:

* inside a checkpoint write: ``SSL_JAX_CHECKPOINT_PAUSE=<step>:<file>`` (the hook of
  ``ssl_jax.train.checkpoint``) makes the save of ``<step>`` write ``<file>`` and block just
  before Orbax commits it; the test kills the process then;
* a full disk: without root there is no small file system to fill, so the child runs under
  ``RLIMIT_FSIZE`` (Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, "File
  too large", where a full disk gives ENOSPC: the same code paths);
* NaN in a batch: the method's views of one step are multiplied by NaN (in process).
"""

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from ssl_jax.train import checkpoint, loop
from tests.conftest import load_config
from tests.methods.harness import FAST_COMPILE

ROOT = Path(__file__).resolve().parents[2]
STEPS, EVERY = 10, 2
TIMEOUT = 600.0
TMP_SUFFIX = ".orbax-checkpoint-tmp"


# -- running ssl_jax.main ----------------------------------------------------------------------
def _command(workdir: Path, data: tuple[Path, Path]) -> list[str]:
    subset, data_dir = data
    return [
        "-m", "ssl_jax.main",
        "--config", "experiments/configs/simclr_cifar10.py:tiny",
        "--workdir", str(workdir),
        f"--config.data.dataset=folder:{subset}",
        f"--config.data.data_dir={data_dir}",
        f"--config.train.num_steps={STEPS}",
        f"--config.train.checkpoint_every={EVERY}",
        "--config.train.async_checkpoint=True",
    ]  # fmt: skip


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != checkpoint.PAUSE_ENV}
    env.update(
        # Cheap code generation (same computation, less optimised) and a shared cache.
        XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
        " --xla_llvm_disable_expensive_passes=true",
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        **extra,
    )
    return env


def _argv(args: list[str], fsize: int | None) -> list[str]:
    if fsize is None:
        return [sys.executable, *args]
    # Set the limit in the child, then become ssl_jax.main.
    return [
        sys.executable,
        "-c",
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize}, {fsize})); "
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
        *args,
    ]


def _start(args: list[str], env: dict[str, str], log: Path, *, fsize: int | None = None):
    with log.open("ab") as out:
        return subprocess.Popen(
            _argv(args, fsize), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _finish(proc: subprocess.Popen, log: Path) -> str:
    try:
        proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"run did not finish:\n{_tail(log)}")
    return log.read_text(errors="replace")


def _tail(log: Path, n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else "(no output)"


def _wait_until(proc: subprocess.Popen, log: Path, ready, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"run exited ({proc.returncode}) before {what}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}:\n{_tail(log)}")
        time.sleep(0.05)


def _kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


# -- what a run leaves -----------------------------------------------------------------------
def _rows(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _last_rows(workdir: Path) -> dict[int, dict]:
    """The last logged row of every step (a resumed run logs the steps it redoes again)."""
    rows = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows[row["step"]] = row
    return rows


def _steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _partial(workdir: Path) -> list[str]:
    return sorted(p.name for p in (workdir / "checkpoints").iterdir() if TMP_SUFFIX in p.name)


def _arrays(step_dir: Path) -> dict[str, np.ndarray]:
    """Every array of a saved state, as numpy, by tree path (read with plain Orbax)."""
    ckptr = ocp.PyTreeCheckpointer()
    tree = ckptr.metadata(step_dir / "state").item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    state = ckptr.restore(step_dir / "state", args=ocp.args.PyTreeRestore(restore_args=args))
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(state)}


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _assert_same_as_reference(workdir: Path, reference: Path) -> None:
    assert _steps(workdir)[-1] == STEPS
    want, got = (
        _arrays(reference / "checkpoints" / str(STEPS)),
        _arrays(workdir / "checkpoints" / str(STEPS)),
    )
    assert sorted(got) == sorted(want) and len(want) > 10
    for path, x in want.items():
        assert got[path].dtype == x.dtype and got[path].shape == x.shape, path
        assert got[path].tobytes() == x.tobytes(), f"{path} differs from the uninterrupted run"
    assert _last_rows(workdir) == _last_rows(reference)  # every metric of every step, exactly
    assert not _partial(workdir)


@pytest.fixture(scope="module")
def data(cifar_subset_dir, tiny_data_dir) -> tuple[Path, Path]:
    return cifar_subset_dir, tiny_data_dir


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data, cache) -> Path:
    """One uninterrupted run: checkpoints 6, 8, 10 and the metrics of steps 0-9."""
    workdir = tmp_path_factory.mktemp("faults") / "reference"
    log = workdir.parent / "reference.log"
    proc = _start(_command(workdir, data), _env(cache), log)
    _finish(proc, log)
    assert proc.returncode == 0, _tail(log)
    assert _steps(workdir) == [6, 8, 10] and sorted(_last_rows(workdir)) == list(range(STEPS))
    return workdir


# -- kill -9 ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_anywhere_then_resume_is_bit_identical(tmp_path, data, cache, reference):
    rng = np.random.default_rng(8)  # fixed: the kill points are part of the test
    workdir = tmp_path / "run"

    # 1. kill -9 once k steps have been logged (wherever the process is then, possibly
    #    in the middle of an asynchronous checkpoint write).
    k = int(rng.integers(3, 6))
    log = tmp_path / "1.log"
    proc = _start(_command(workdir, data), _env(cache), log)
    _wait_until(proc, log, lambda: _rows(workdir) >= k, f"{k} logged steps")
    _kill9(proc)
    resume_at = max(_steps(workdir), default=0)
    assert resume_at < STEPS

    # 2. restart; kill -9 inside the write of a later checkpoint (data written, not committed).
    pause_at = int(rng.choice(np.arange(resume_at + EVERY, STEPS + 1, EVERY)))
    ready = tmp_path / "paused"
    env = _env(cache, **{checkpoint.PAUSE_ENV: f"{pause_at}:{ready}"})
    log = tmp_path / "2.log"
    proc = _start(_command(workdir, data), env, log)
    _wait_until(proc, log, ready.exists, f"the write of checkpoint {pause_at}")
    partial = _partial(workdir)
    assert partial == [f"{pause_at}{TMP_SUFFIX}"], partial
    assert (workdir / "checkpoints" / partial[0] / "state").is_dir()  # the data is there
    _kill9(proc)
    assert pause_at not in _steps(workdir)
    complete = _steps(workdir)[-1]

    # 3. restart to the end: the unfinished save is ignored and removed, the run resumes from
    #    the last complete checkpoint and ends exactly where an uninterrupted run ends.
    rows_before, log = _rows(workdir), tmp_path / "3.log"
    proc = _start(_command(workdir, data), _env(cache), log)
    out = _finish(proc, log)
    assert proc.returncode == 0, _tail(log)
    removed = workdir.absolute() / "checkpoints" / f"{pause_at}{TMP_SUFFIX}"
    assert f"removed the unfinished checkpoint save {removed}" in out, _tail(log)
    resumed = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert resumed[rows_before]["step"] == complete  # picked up at the complete checkpoint
    _assert_same_as_reference(workdir, reference)


# -- damaged checkpoints -----------------------------------------------------------------------
def _largest_file(root: Path) -> Path:
    return max((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


@pytest.mark.slow
def test_truncated_and_corrupted_checkpoints_fall_back_with_warnings(
    tmp_path, data, cache, reference
):
    workdir, log = tmp_path / "run", tmp_path / "run.log"
    shutil.copytree(reference, workdir)
    ckpts = workdir / "checkpoints"
    truncated = _largest_file(ckpts / "10" / "state")
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    garbled = _largest_file(ckpts / "8" / "state")
    raw = bytearray(garbled.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 16] = bytes(b ^ 0x5A for b in raw[len(raw) // 2 :][:16])
    garbled.write_bytes(bytes(raw))
    rows_before = _rows(workdir)

    proc = _start(_command(workdir, data), _env(cache), log)
    out = _finish(proc, log)
    assert proc.returncode == 0, _tail(log)
    for step in (10, 8):
        assert f"checkpoint {ckpts / str(step)} is corrupt" in out, _tail(log)
        assert (ckpts / f"{step}.corrupt").is_dir()  # kept for inspection
    assert "checksum mismatch" in out  # the garbled one reads back without an Orbax error
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert rows[rows_before]["step"] == 6  # resumed from the newest intact checkpoint
    _assert_same_as_reference(workdir, reference)


# -- full disk, unwritable directory -------------------------------------------------------------
@pytest.mark.slow
def test_disk_full_at_start_fails_before_touching_the_data(tmp_path, data, cache):
    fresh_data_dir = tmp_path / "tfds"  # not prepared: preparing it would write a lot
    fresh_data_dir.mkdir()
    args = _command(tmp_path / "run", (data[0], fresh_data_dir))
    # A pipe, not a file: the limit must not cut the child's own output short.
    proc = subprocess.Popen(
        _argv(args, 1024),
        cwd=ROOT,
        env=_env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out = proc.communicate(timeout=TIMEOUT)[0].decode(errors="replace")
    assert proc.returncode != 0
    assert "CheckpointDirError" in out and "is not writable: File too large" in out, out[-3000:]
    assert str(tmp_path / "run" / "checkpoints") in out
    assert not any(fresh_data_dir.iterdir())  # failed before preparing any data


@pytest.mark.slow
def test_disk_full_mid_run_names_the_step_and_keeps_good_checkpoints(
    tmp_path, data, cache, reference
):
    workdir, log = tmp_path / "run", tmp_path / "run.log"
    shutil.copytree(reference, workdir)
    for step in (8, 10):
        shutil.rmtree(workdir / "checkpoints" / str(step))
    good = _digest(workdir / "checkpoints" / "6")
    # The largest file of a checkpoint is ~2 MB; metrics and events stay far below 512 KiB.
    # Its own copy of the cache: a write cut short by the limit must not reach the shared one.
    own_cache = tmp_path / "cache"
    shutil.copytree(cache, own_cache)
    proc = _start(_command(workdir, data), _env(own_cache), log, fsize=512 * 1024)
    out = _finish(proc, log)
    assert proc.returncode != 0
    error = next((x for x in out.splitlines() if "CheckpointWriteError: " in x), "")
    assert f"[Errno 27] writing checkpoint 8 to {workdir / 'checkpoints'} failed: " in error, out[
        -3000:
    ]
    assert "failed: File too large;" in error and "checkpoints [6] are untouched" in error
    assert _steps(workdir) == [6] and _digest(workdir / "checkpoints" / "6") == good
    assert _partial(workdir) == [f"8{TMP_SUFFIX}"]

    # With space again, a restart removes the unfinished save and ends as if nothing happened.
    log = tmp_path / "restart.log"
    proc = _start(_command(workdir, data), _env(cache), log)
    out = _finish(proc, log)
    assert proc.returncode == 0, _tail(log)
    assert "removed the unfinished checkpoint save" in out
    _assert_same_as_reference(workdir, reference)


def _config(subset: Path, data_dir: Path, **train):
    c = load_config("simclr_cifar10.py", "tiny")
    c.data.dataset = f"folder:{subset}"
    c.data.data_dir = str(data_dir)
    c.train.async_checkpoint = False
    c.eval.max_train_examples = 0
    for k, v in train.items():
        c.train[k] = v
    return c


def test_unwritable_workdir_fails_before_touching_the_data(tmp_path, cifar_subset_dir):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the work dir should be")
    fresh_data_dir = tmp_path / "tfds"
    fresh_data_dir.mkdir()
    with pytest.raises(checkpoint.CheckpointDirError, match="cannot create checkpoint directory"):
        loop.Trainer(_config(cifar_subset_dir, fresh_data_dir), blocker / "run")
    assert not any(fresh_data_dir.iterdir())


# -- NaN in a batch ----------------------------------------------------------------------------
class NaNAtSteps:
    """A method whose views at the optimiser steps ``steps`` are multiplied by NaN.

    Through the network, a NaN batch always makes the gradients NaN (NaN times anything is
    NaN); whether the loss is NaN too depends on the layers (XLA's ReLU maps NaN to 0).
    """

    def __init__(self, method, steps: tuple[int, ...]):
        self._method, self._steps = method, jnp.asarray(steps)

    def __getattr__(self, name):
        return getattr(self._method, name)

    def loss(self, params, batch_stats, aux, views, rng, step, **kwargs):
        poison = jnp.where(jnp.any(step == self._steps), jnp.nan, 1.0)
        views = [v * poison for v in views]
        return self._method.loss(params, batch_stats, aux, views, rng, step, **kwargs)


def test_nan_batch_is_skipped_on_request_or_stops_the_run_naming_step_and_metric(
    tmp_path, cifar_subset_dir, tiny_data_dir, caplog
):
    ckpts = tmp_path / "checkpoints"
    c = _config(cifar_subset_dir, tiny_data_dir, num_steps=6, checkpoint_every=1)
    c.train.keep_checkpoints = 10
    c.train.skip_nonfinite = True
    trainer = loop.Trainer(c, tmp_path)
    trainer.method = NaNAtSteps(trainer.method, (1, 3))
    jitted, compiled = trainer._step_fn(1), []  # checkpoint_every=1: one step per call

    def step_fn(state, batch, key):  # compiled once, cheaply, and reused by both runs below
        if not compiled:
            lowered = jitted.lower(state, batch, key)
            compiled.append(lowered.compile(compiler_options=FAST_COMPILE))
        return compiled[0](state, batch, key)

    trainer._step_fn = lambda steps: step_fn

    # Skip mode: the update of step 1 is not applied, training goes on.
    with caplog.at_level(logging.WARNING, logger=loop.__name__):
        state = trainer.run(stop_at=3)
    assert int(state.step) == 3 and int(state.nonfinite_step) == 1
    warned = [r.getMessage() for r in caplog.records if r.name == loop.__name__]
    assert any(
        re.search(r"non-finite value at step 1: (\w+, )*grad_norm\b.*Skipping it", w)
        for w in warned
    ), warned
    before, skipped, after = (_arrays(ckpts / str(s)) for s in (1, 2, 3))
    changed = sorted(p for p in before if before[p].tobytes() != skipped[p].tobytes())
    assert changed == ["['nonfinite_step']", "['step']"]  # nothing else moved at the NaN step
    assert any("['params']" in p and skipped[p].tobytes() != after[p].tobytes() for p in after)
    assert all(np.isfinite(x).all() for x in after.values() if x.dtype.kind == "f")

    # Stop mode (the default): the NaN batch of step 3 stops the run naming the step and the
    # metric, and nothing is written over (or after) the good checkpoints.
    c.train.skip_nonfinite = False
    good = _digest(ckpts)
    resumed = loop.Trainer(c, tmp_path)
    resumed._step_fn = lambda steps: step_fn  # the same step function: the same NaN batches
    # The restore target's shapes and shardings, without compiling the initialisation again.
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    resumed._init_state = lambda sample_images: target
    with pytest.raises(
        loop.NonFiniteLossError, match=r"non-finite value at step 3: (\w+, )*grad_norm\b"
    ):
        resumed.run()
    assert _digest(ckpts) == good
    assert _steps(tmp_path) == [1, 2, 3]
