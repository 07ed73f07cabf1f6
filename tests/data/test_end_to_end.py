"""Real CIFAR-10 JPEGs -> image-folder TFDS -> tf.data -> sharded device batches -> views.

The global batch is split exactly once over 2 processes: simulated in this process (two
pipelines with ``process_index`` 0/1 on the 8 fake devices), and for real with two JAX
processes joined by ``jax.distributed`` (4 CPU devices each).
"""

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from jax.sharding import PartitionSpec as P

from ssl_jax import augment, data

GLOBAL_BATCH = 16
N_TRAIN = 200


def _keys(images: np.ndarray) -> list[str]:
    return [hashlib.sha1(x.tobytes()).hexdigest() for x in images]


@pytest.fixture(scope="module")
def train_keys(cifar_subset_source) -> set[str]:
    ds = tfds.as_numpy(cifar_subset_source.builder.as_dataset(split="train"))
    return set(_keys(np.stack([ex["image"] for ex in ds])))


def test_two_simulated_processes_to_sharded_views(cifar_subset_source, train_keys, n_devices):
    mesh = jax.make_mesh((n_devices,), ("data",))
    streams = [
        data.train_batches(
            cifar_subset_source,
            batch_size=GLOBAL_BATCH // 2,
            image_size=32,
            seed=0,
            process_index=p,
            process_count=2,
        )
        for p in (0, 1)
    ]
    views_fn = jax.jit(lambda k, x: augment.make_views("simclr_cifar", k, x))
    seen = [[], []]
    steps = -(-N_TRAIN // GLOBAL_BATCH)  # 13 steps cover one epoch of each half
    for step in range(steps):
        halves = [next(s) for s in streams]
        for p in (0, 1):
            seen[p] += _keys(halves[p]["image"])
        assert not set(_keys(halves[0]["image"])) & set(_keys(halves[1]["image"]))
        # What process p contributes to the global batch: its rows, on its 4 devices.
        host = {k: np.concatenate([h[k] for h in halves]) for k in ("image", "label")}
        g = data.to_global(host, mesh)
        assert g["image"].shape == (GLOBAL_BATCH, 32, 32, 3) and g["label"].shape == (16,)
        assert g["image"].sharding.spec == P("data")
        for shard in g["image"].addressable_shards:
            rows = shard.index[0]
            assert rows.stop - rows.start == GLOBAL_BATCH // n_devices
            np.testing.assert_array_equal(np.asarray(shard.data), host["image"][rows])
        if step == 0:
            views = views_fn(jax.random.key(step), g["image"])
            assert len(views) == 2
            for v in views:
                assert v.shape == (GLOBAL_BATCH, 32, 32, 3) and v.dtype == np.float32
                assert v.sharding.is_equivalent_to(g["image"].sharding, v.ndim)
                assert np.isfinite(np.asarray(v)).all()
    # Each half covers its own 100 images once per epoch; together: the split, once.
    first_epoch = [set(seen[p][: N_TRAIN // 2]) for p in (0, 1)]
    assert all(len(s) == N_TRAIN // 2 for s in first_epoch)
    assert not first_epoch[0] & first_epoch[1]
    assert first_epoch[0] | first_epoch[1] == train_keys


def test_to_global_checks(n_devices):
    mesh = jax.make_mesh((n_devices,), ("data",))
    with pytest.raises(ValueError, match="not divisible by the 8 local devices"):
        data.to_global({"image": np.zeros((12, 2, 2, 3), np.uint8)}, mesh)
    with pytest.raises(ValueError, match="mesh has no axis 'batch'"):
        data.to_global({"image": np.zeros((8, 2))}, mesh, axis="batch")
    mesh2 = jax.make_mesh((4, 2), ("data", "model"))
    g = data.to_global({"x": np.arange(8.0)}, mesh2)  # replicated over 'model'
    assert g["x"].sharding.spec == P("data")
    np.testing.assert_array_equal(np.asarray(g["x"]), np.arange(8.0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_real_jax_processes(cifar_subset_source, train_keys, tmp_path):
    builder = cifar_subset_source.builder
    data_dir = str(Path(builder.data_dir).parents[1])
    worker = Path(__file__).with_name("multiprocess_worker.py")
    port = str(_free_port())
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(p), port, data_dir, builder.info.name, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for p in (0, 1)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    out = [np.load(tmp_path / f"p{p}.npz") for p in (0, 1)]
    for p in (0, 1):  # both processes assembled the same global batches
        np.testing.assert_array_equal(out[p]["gathered"], out[0]["gathered"])
    local0, local1, gathered = out[0]["local"], out[1]["local"], out[0]["gathered"]
    # The global batch is process 0's rows then process 1's: split exactly once.
    np.testing.assert_array_equal(gathered, np.concatenate([local0, local1], axis=1))
    for p in (0, 1):  # two steps' batches stacked for one call: the same global batches
        np.testing.assert_array_equal(out[p]["stacked"], gathered[-2:])
    half = N_TRAIN // 2
    keys = [_keys(loc.reshape(-1, 32, 32, 3))[:half] for loc in (local0, local1)]
    assert len(set(keys[0])) == len(set(keys[1])) == half
    assert not set(keys[0]) & set(keys[1])
    assert set(keys[0]) | set(keys[1]) == train_keys
