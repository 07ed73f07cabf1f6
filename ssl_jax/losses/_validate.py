"""Input checks shared by the objectives: fail early with a message naming the problem.

Checks only look at static information (shapes, Python scalars), so they run at trace
time under ``jax.jit`` and cost nothing at run time.
"""

from collections.abc import Sequence

import jax
import numpy as np


def check_rank(x: jax.Array, rank: int | Sequence[int], name: str) -> None:
    ranks = (rank,) if isinstance(rank, int) else tuple(rank)
    if np.ndim(x) not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{name} must have rank {want}, got shape {np.shape(x)}")


def check_same_shape(a: jax.Array, b: jax.Array, names: tuple[str, str]) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, "
            f"got {np.shape(a)} and {np.shape(b)}"
        )


def check_min_batch(x: jax.Array, minimum: int, name: str, axis: int = 0) -> None:
    n = np.shape(x)[axis]
    if n < minimum:
        raise ValueError(f"{name} needs a batch of at least {minimum} along axis {axis}, got {n}")


def check_positive(value: float, name: str) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    if not np.all(np.asarray(value) > 0):
        raise ValueError(f"{name} must be > 0, got {value}")


def check_non_negative(value: float, name: str) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    if not np.all(np.asarray(value) >= 0):
        raise ValueError(f"{name} must be >= 0, got {value}")


def check_in_range(value: float, low: float, high: float, name: str) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    if not (low <= float(value) <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
