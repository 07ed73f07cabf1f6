"""Host batches -> global device arrays sharded over the mesh's data axis.

Every process passes its own part of the global batch; the result is one ``jax.Array``
per leaf whose leading axis is the global batch, split over the devices of ``axis``.

References: JAX "Distributed arrays and automatic parallelization";
``jax.make_array_from_process_local_data``.
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def to_global(batch: Any, mesh: Mesh, axis: str = "data", *, batch_dim: int = 0) -> Any:
    """Assembles each process's batch into global arrays sharded on ``axis``.

    Args:
      batch: pytree of numpy arrays ``[B_local, ...]`` (this process's rows; lists of
        views are fine).
      mesh: the device mesh.
      axis: mesh axis the batch dimension is split over.
      batch_dim: which dimension is the batch (1 for a stack of several steps' batches,
        ``[steps, B_local, ...]``).

    Returns:
      The same pytree of ``jax.Array``, dimension ``batch_dim`` ``B_local * process_count``.
    """
    if axis not in mesh.axis_names:
        raise ValueError(f"mesh has no axis {axis!r}; its axes are {mesh.axis_names}")
    sharding = NamedSharding(mesh, P(*[None] * batch_dim, axis))
    # Devices of this process along ``axis``: the local rows are split over them.
    is_local = np.vectorize(lambda d: d.process_index == jax.process_index())(mesh.devices)
    per_process = len(set(np.argwhere(is_local)[:, mesh.axis_names.index(axis)].tolist()))

    def put(x):
        x = np.asarray(x)
        if x.ndim <= batch_dim:
            raise ValueError(
                f"to_global needs arrays with a batch dimension {batch_dim}, got shape {x.shape}"
            )
        if x.shape[batch_dim] % per_process:
            raise ValueError(
                f"local batch {x.shape[batch_dim]} is not divisible by the {per_process} local "
                f"devices along mesh axis {axis!r}"
            )
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, batch)
