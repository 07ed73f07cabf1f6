"""One process of the 2-process training test (run by tests/train/test_multihost.py).

Usage: python multihost_worker.py PROCESS_ID PORT CONFIG_JSON WORKDIR OUT_NPZ
"""

import os
import sys

from tests.xla_flags import xla_flags

os.environ["XLA_FLAGS"] = xla_flags(4)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import ml_collections
import numpy as np


def main() -> None:
    pid, port, config_json, workdir, out = sys.argv[1:6]
    jax.config.update("jax_default_matmul_precision", "highest")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=int(pid)
    )
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    from ssl_jax.train import loop

    config = ml_collections.ConfigDict(__import__("json").loads(open(config_json).read()))
    state = loop.train(config, workdir)
    # Replicated params are fully addressable on every process.
    leaves = [np.asarray(x) for x in jax.tree.leaves(state.params)]
    np.savez(out, *leaves)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
