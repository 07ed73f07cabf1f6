"""One of two JAX processes (4 CPU devices each) reading CIFAR through the real pipeline.

Run by ``test_end_to_end.py``: ``python multiprocess_worker.py PID PORT DATA_DIR NAME OUT``.
Writes ``OUT/p<PID>.npz`` with this process's host batches and the global batch as seen
through ``to_global`` + ``process_allgather``, and the last two batches stacked the same way.
"""

import os
import sys

from tests.xla_flags import xla_flags

os.environ["XLA_FLAGS"] = xla_flags(4)
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

STEPS = 13  # 13 x 16 = 208 >= one epoch of the 200-image subset
GLOBAL_BATCH = 16


def main(pid: int, port: str, data_dir: str, name: str, out: str) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
    assert (jax.process_count(), jax.device_count(), jax.local_device_count()) == (2, 8, 4)

    from ssl_jax import augment, data

    source = data.resolve_source(name, data_dir=data_dir, download=False)
    mesh = jax.make_mesh((8,), ("data",))
    batches = data.train_batches(
        source,
        batch_size=GLOBAL_BATCH // jax.process_count(),
        image_size=32,
        seed=0,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    views_fn = jax.jit(lambda k, x: augment.make_views("simclr_cifar", k, x))
    local, gathered = [], []
    for step in range(STEPS):
        batch = next(batches)
        g = data.to_global(batch, mesh)
        assert g["image"].shape == (GLOBAL_BATCH, 32, 32, 3)
        assert g["image"].sharding.spec == P("data")
        local.append(batch["image"])
        gathered.append(multihost_utils.process_allgather(g["image"], tiled=True))
        if step == 0:
            views = views_fn(jax.random.key(0), g["image"])
            assert all(v.sharding.is_equivalent_to(g["image"].sharding, 4) for v in views), views
            assert all(v.shape == (GLOBAL_BATCH, 32, 32, 3) for v in views)
    # The last two steps' batches stacked for one call of 2 steps (``train.steps_per_call``):
    # the processes' rows meet along dimension 1.
    g = data.to_global({"image": np.stack(local[-2:])}, mesh, batch_dim=1)
    assert g["image"].shape == (2, GLOBAL_BATCH, 32, 32, 3)
    assert g["image"].sharding.spec == P(None, "data")
    stacked = multihost_utils.process_allgather(g["image"], tiled=True)
    np.savez(
        os.path.join(out, f"p{pid}.npz"),
        local=np.stack(local),
        gathered=np.stack(gathered),
        stacked=stacked,
    )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
