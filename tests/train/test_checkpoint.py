"""Checkpointer (Orbax) round trips, rotation, corruption fallback, guards; PreemptionGuard."""

import errno
import logging
import os
import signal
import time
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax.train import checkpoint
from ssl_jax.train.checkpoint import (
    CheckpointDirError,
    Checkpointer,
    CorruptCheckpointError,
    NonFiniteStateError,
)
from ssl_jax.train.preemption import PreemptionGuard


@flax.struct.dataclass
class ToyState:
    step: jax.Array
    params: dict
    opt_state: optax.OptState
    extra: dict


def make_state(seed: int = 0, scale: float = 1.0) -> ToyState:
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = {
        "conv": {"kernel": scale * jax.random.normal(k3, (3, 3, 16, 32))},
        "dense": {"kernel": scale * jax.random.normal(k1, (6, 4)), "bias": jnp.zeros(4)},
        "emb": scale * jax.random.normal(k2, (3, 5), jnp.bfloat16),
    }
    tx = optax.sgd(0.1, momentum=0.9)
    return ToyState(
        step=jnp.asarray(seed, jnp.int32),
        params=params,
        opt_state=tx.init(params),
        extra={
            "queue": jnp.arange(12, dtype=jnp.uint8).reshape(3, 4),
            "mask": jnp.array([True, False, True]),
        },
    )


def assert_bit_identical(a, b) -> None:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def step_dir(ck: Checkpointer, step: int) -> Path:
    return ck.directory / str(step)


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("async_save", [False, True])
def test_round_trip_is_bit_identical(tmp_path, async_save):
    state = make_state(1)
    with Checkpointer(tmp_path / "ck", async_save=async_save) as ck:
        assert ck.restore_latest(state) is None
        assert ck.save(5, state, meta={"data_position": 640, "config": {"lr": 0.1}})
        ck.wait()
    # A fresh instance sees only what reached the disk.
    with Checkpointer(tmp_path / "ck") as ck2:
        step, restored, meta = ck2.restore_latest(jax.eval_shape(lambda: state))
    assert step == 5 and meta == {"data_position": 640, "config": {"lr": 0.1}}
    assert isinstance(restored, ToyState)
    assert_bit_identical(restored, state)


def test_async_save_snapshots_state_before_returning(tmp_path):
    """The caller may donate / delete the arrays right after ``save`` returns."""
    state = make_state(2)
    want = jax.device_get(state)
    with Checkpointer(tmp_path, async_save=True) as ck:
        ck.save(1, state)
        for x in jax.tree.leaves(state):
            x.delete()
        ck.wait()
        _, restored, _ = ck.restore_latest(jax.eval_shape(lambda: make_state(2)))
    assert_bit_identical(restored, want)


def test_sharded_state_restores_onto_requested_sharding(tmp_path, n_devices):
    mesh = jax.make_mesh((2, n_devices // 2), ("a", "b"))
    put = lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec))
    rng = np.random.default_rng(0)
    host = {
        "w": rng.normal(size=(16, 8)).astype(np.float32),
        "v": rng.normal(size=(4, 8)).astype(np.float32),
        "s": np.asarray(7, np.int32),
    }
    saved = {
        "w": put(host["w"], P("a", "b")),
        "v": put(host["v"], P(None, "b")),
        "s": put(host["s"], P()),
    }
    with Checkpointer(tmp_path, async_save=False) as ck:
        ck.save(3, saved)
        # Same layout, from live arrays ...
        _, same, _ = ck.restore_latest(saved)
        for k in saved:
            assert same[k].sharding.is_equivalent_to(saved[k].sharding, saved[k].ndim)
        # ... and another layout, from jax.eval_shape + shardings (what a resized job does).
        specs = {"w": P("b", None), "v": P(), "s": P()}
        abstract = jax.tree.map(
            lambda a, spec: jax.ShapeDtypeStruct(
                a.shape, a.dtype, sharding=NamedSharding(mesh, spec)
            ),
            jax.eval_shape(lambda: host),
            specs,
        )
        _, moved, _ = ck.restore_latest(abstract)
    for k in host:
        assert moved[k].sharding.is_equivalent_to(NamedSharding(mesh, specs[k]), host[k].ndim)
    assert_bit_identical(same, host)
    assert_bit_identical(moved, host)


# -- rotation and save policy ----------------------------------------------------------------


def test_keeps_last_n_and_save_every(tmp_path):
    state = make_state(0)
    with Checkpointer(tmp_path / "a", max_to_keep=2, async_save=True) as ck:
        for s in range(1, 6):
            assert ck.save(s, state, meta={"s": s})
        ck.wait()
        assert ck.all_steps() == [4, 5]
        assert not ck.save(5, state, force=True)  # exists already: not rewritten
        assert not ck.save(3, state)  # older than the latest
    with Checkpointer(tmp_path / "b", max_to_keep=5, save_every=3, async_save=False) as ck:
        saved = [s for s in range(1, 8) if ck.save(s, state)]
        assert saved == [3, 6]
        assert ck.save(7, state, force=True)
        assert ck.all_steps() == [3, 6, 7]


def test_incomplete_save_is_ignored(tmp_path):
    state = make_state(0)
    with Checkpointer(tmp_path, async_save=False) as ck:
        ck.save(2, state)
    # What a crash in the middle of writing step 4 leaves behind (Orbax's temporary name).
    partial = tmp_path / "4.orbax-checkpoint-tmp-1700000000" / "state"
    partial.mkdir(parents=True)
    (partial / "manifest.ocdbt").write_bytes(b"\0" * 10)
    with Checkpointer(tmp_path) as ck:
        step, restored, _ = ck.restore_latest(state)
    assert step == 2
    assert_bit_identical(restored, state)


# -- corruption ------------------------------------------------------------------------------


def _largest_file(root: Path) -> Path:
    return max((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2
    data[i : i + 8] = bytes(b ^ 0xFF for b in data[i : i + 8])
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    # Orbax/TensorStore read this back without error: only the checksums catch it.
    "garble_array_data": lambda d: _garble(_largest_file(d / "state")),
    "delete_array_manifest": lambda d: (d / "state" / "manifest.ocdbt").unlink(),
    "truncate_meta": lambda d: (d / "meta" / "metadata").write_bytes(
        (d / "meta" / "metadata").read_bytes()[:20]
    ),
    "delete_state_dir": lambda d: [p.unlink() for p in (d / "state").rglob("*") if p.is_file()],
}


# When one array fails to read, Orbax's other pending reads hit a closed asyncio loop and
# Python reports "Event loop is closed" as unraisable: noise from Orbax's error path.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_latest_falls_back_with_warning(tmp_path, caplog, kind):
    states = {s: make_state(s, scale=10.0) for s in (1, 2, 3)}
    with Checkpointer(tmp_path, async_save=False) as ck:
        for s, st in states.items():
            ck.save(s, st, meta={"s": s})
        CORRUPTIONS[kind](step_dir(ck, 3))
        with caplog.at_level(logging.WARNING, logger=checkpoint.__name__):
            step, restored, meta = ck.restore_latest(states[3])
        assert step == 2 and meta == {"s": 2}
        assert_bit_identical(restored, states[2])
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(str(tmp_path / "3") in w and "corrupt" in w for w in warnings), warnings
        if kind == "garble_array_data":  # read back without error: only the checksum tells
            assert any("checksum mismatch in .params['conv']['kernel']" in w for w in warnings), (
                warnings
            )
        # Kept for inspection, out of Orbax's view; training can save step 3 again.
        assert (tmp_path / "3.corrupt").is_dir()
        assert ck.all_steps() == [1, 2]
        assert ck.save(3, states[3])
        assert ck.restore_latest(states[3])[0] == 3


def test_all_corrupt_raises_and_structure_change_is_not_corruption(tmp_path):
    state = make_state(0)
    with Checkpointer(tmp_path / "bad", async_save=False) as ck:
        ck.save(1, state)
        _garble(_largest_file(step_dir(ck, 1) / "state"))
        with pytest.raises(CorruptCheckpointError, match="no intact checkpoint"):
            ck.restore_latest(state)
    with Checkpointer(tmp_path / "changed", async_save=False) as ck:
        ck.save(1, state)
        other = state.replace(extra={"queue": jnp.zeros((5, 4), jnp.uint8)})
        with pytest.raises(ValueError, match="holds a different state"):
            ck.restore_latest(other)
        assert ck.all_steps() == [1]  # a config change must not quarantine good checkpoints


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_state_is_refused(tmp_path, bad):
    good = make_state(0)
    with Checkpointer(tmp_path, async_save=True) as ck:
        ck.save(1, good)
        broken = good.replace(params={**good.params, "emb": good.params["emb"].at[0, 0].set(bad)})
        with pytest.raises(NonFiniteStateError, match=r"step 2.*\['emb'\]"):
            ck.save(2, broken, force=True)
        ck.wait()
        assert ck.all_steps() == [1]
        step, restored, _ = ck.restore_latest(good)
    assert step == 1
    assert_bit_identical(restored, good)


def test_unusable_directories_fail_fast(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CheckpointDirError, match="cannot create checkpoint directory"):
        Checkpointer(blocker / "ck")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(checkpoint.os, "fsync", no_space)
        with pytest.raises(CheckpointDirError, match="not writable: No space left"):
            Checkpointer(tmp_path / "full")
    assert not list((tmp_path / "full").iterdir())  # the probe file is cleaned up

    usage = checkpoint.shutil.disk_usage(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(checkpoint.shutil, "disk_usage", lambda p: usage._replace(free=10 * 2**20))
        with pytest.raises(CheckpointDirError, match=r"10\.0 MiB free"):
            Checkpointer(tmp_path / "small")


def test_save_refused_when_disk_cannot_hold_state(tmp_path, monkeypatch):
    state = make_state(0)
    ck = Checkpointer(tmp_path, async_save=False, min_free_bytes=1000)
    usage = checkpoint.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: usage._replace(free=1100))
    with pytest.raises(CheckpointDirError, match="not enough space"):
        ck.save(1, state)
    assert ck.all_steps() == []
    ck.close()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="max_to_keep"):
        Checkpointer(tmp_path, max_to_keep=0)
    with pytest.raises(ValueError, match="local"):
        Checkpointer("gs://bucket/run")
    with Checkpointer(tmp_path) as ck:
        with pytest.raises(ValueError, match="JSON"):
            ck.save(1, make_state(0), meta={"x": object()})
        with pytest.raises(ValueError, match="step"):
            ck.save(-1, make_state(0))


# -- preemption ------------------------------------------------------------------------------


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while not predicate() and time.monotonic() < end:
        time.sleep(0.01)
    return predicate()


def test_preemption_guard_sets_flag_and_restores_handler():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionGuard() as guard:
        assert not guard.should_stop and not guard.should_stop_at(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert _wait_for(lambda: guard.should_stop)
        assert guard.should_stop_at(1) and guard.received_signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before


def test_preemption_guard_sigint_twice_interrupts():
    # Python's own Ctrl-C handler as the previous one: a shell that starts pytest in the
    # background makes it inherit SIGINT ignored, and then there is no KeyboardInterrupt.
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with PreemptionGuard(signals=(signal.SIGTERM, signal.SIGINT)) as guard:
                os.kill(os.getpid(), signal.SIGINT)
                assert _wait_for(lambda: guard.should_stop)
                os.kill(os.getpid(), signal.SIGINT)
                _wait_for(lambda: False, timeout=2.0)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)


def test_preemption_guard_multihost_mode_uses_sync_point():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionGuard(multihost=True) as guard:
        # No handler of ours: JAX's preemption service owns SIGTERM on multi-host runs.
        assert signal.getsignal(signal.SIGTERM) == before
        # Single process without jax.distributed: the sync point is never reached.
        assert not guard.should_stop_at(3)


def _train(workdir: Path, num_steps: int, preempt_after: int | None = None):
    """A miniature of the training loop: resume, step, stop on SIGTERM, save, exit."""
    tx = optax.sgd(0.05, momentum=0.9)
    params = {"w": jnp.linspace(-1.0, 1.0, 8)}
    state = {"params": params, "opt": tx.init(params), "step": jnp.zeros((), jnp.int32)}

    @jax.jit
    def step_fn(state):
        x = jax.random.normal(jax.random.fold_in(jax.random.key(0), state["step"]), (8,))
        grads = jax.grad(lambda p: jnp.sum((p["w"] * x - 1.0) ** 2))(state["params"])
        updates, opt = tx.update(grads, state["opt"], state["params"])
        return {
            "params": optax.apply_updates(state["params"], updates),
            "opt": opt,
            "step": state["step"] + 1,
        }

    with Checkpointer(workdir, async_save=True) as ck:
        restored = ck.restore_latest(state)
        start = 0 if restored is None else restored[0]
        state = state if restored is None else restored[1]
        with PreemptionGuard() as guard:
            for step in range(start, num_steps):
                state = step_fn(state)
                if step + 1 == preempt_after:
                    os.kill(os.getpid(), signal.SIGTERM)
                    _wait_for(lambda: guard.should_stop)
                if guard.should_stop_at(step + 1):
                    ck.save(step + 1, state, meta={"preempted": True}, force=True)
                    return step + 1, state
        ck.save(num_steps, state, force=True)
    return num_steps, state


def test_preempted_run_resumes_to_the_same_result(tmp_path):
    stopped_at, _ = _train(tmp_path / "run", 6, preempt_after=3)
    assert stopped_at == 3
    with Checkpointer(tmp_path / "run") as ck:
        assert ck.all_steps() == [3]
    end, resumed = _train(tmp_path / "run", 6)
    _, straight = _train(tmp_path / "straight", 6)
    assert end == 6
    assert_bit_identical(resumed, straight)
