"""The fixed permutation set of a jigsaw puzzle: greedily maximal Hamming distances.

Plain numpy, run once when a method is built (never traced): the set is part of the task's
definition, class ``i`` being permutation ``i``.

References:
  Noroozi & Favaro, "Unsupervised Learning of Visual Representations by Solving Jigsaw
  Puzzles", ECCV 2016 (Sec. 3.2, Algorithm 1, Table 3).
"""

import functools
import itertools
import math

import numpy as np


def _check_int(value: int, name: str, minimum: int) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of positions at which permutations differ, every row of ``a`` against ``b``.

    Args:
      a: ``[M, n]`` integer permutations.
      b: ``[K, n]`` integer permutations.

    Returns:
      int ``[M, K]`` distances.
    """
    a, b = np.asarray(a), np.asarray(b)
    return np.sum(a[:, None, :] != b[None, :, :], axis=-1)


@functools.lru_cache(maxsize=16)
def _greedy_permutations(n: int, num_tiles: int, seed: int, criterion: str) -> bytes:
    cands = np.array(list(itertools.permutations(range(num_tiles))), dtype=np.int8)
    columns = np.ascontiguousarray(cands.T)  # one contiguous row per position: fast compares
    total = len(cands)
    score = np.zeros(total, np.int64) if criterion == "mean" else np.full(total, num_tiles + 1)
    d, differ = np.zeros(total, np.int8), np.zeros(total, bool)
    picks = [int(np.random.default_rng(seed).integers(total))]
    while len(picks) < n:
        d[:] = 0
        for pos in range(num_tiles):
            np.not_equal(columns[pos], cands[picks[-1], pos], out=differ)
            d += differ
        if criterion == "mean":
            score += d
        else:
            np.minimum(score, d, out=score)
        score[picks] = -1  # chosen permutations are never picked again
        # Ties go to the first candidate in lexicographic order (np.argmax), so the set
        # depends on the seed alone.
        picks.append(int(np.argmax(score)))
    return cands[picks].astype(np.int32).tobytes()


def maximal_hamming_permutations(
    n: int, *, num_tiles: int = 9, seed: int = 0, criterion: str = "min"
) -> np.ndarray:
    """A fixed set of ``n`` permutations of ``num_tiles`` tiles, greedily far apart.

    Noroozi & Favaro's Algorithm 1: start from a permutation drawn uniformly (from
    ``numpy.random.default_rng(seed)``) and repeatedly add the permutation, among all
    ``num_tiles!`` not yet chosen, that is farthest in Hamming distance from the chosen
    set. ``criterion='min'`` measures that by the distance to the NEAREST chosen
    permutation (greedy max-min: it keeps the set's minimum distance as large as the greedy
    can, the property the paper's ablation ties to the transfer results);
    ``criterion='mean'`` by the summed distance to all chosen ones (the algorithm's
    ``1^T D`` exactly as printed). Ties go to the lexicographically first candidate, so the
    result is deterministic for a seed. Cached: ``n = 1000`` over ``9!`` candidates takes a
    few seconds once.

    Args:
      n: size of the set, ``1 <= n <= num_tiles!`` (the paper: 100 to 1000).
      num_tiles: elements per permutation (9 for a 3x3 puzzle), in ``[2, 10]``.
      seed: picks the first permutation.
      criterion: ``'min'`` or ``'mean'``.

    Returns:
      int32 ``[n, num_tiles]``, in the order they were chosen (row ``i`` is class ``i``).
    """
    _check_int(num_tiles, "num_tiles", 2)
    if num_tiles > 10:
        raise ValueError(f"num_tiles must be <= 10 (all num_tiles! candidates), got {num_tiles}")
    _check_int(n, "n", 1)
    if n > math.factorial(num_tiles):
        raise ValueError(f"n={n} exceeds the {math.factorial(num_tiles)} permutations")
    if criterion not in ("min", "mean"):
        raise ValueError(f"criterion must be 'min' or 'mean', got {criterion!r}")
    _check_int(seed, "seed", 0)
    raw = _greedy_permutations(int(n), int(num_tiles), int(seed), criterion)
    return np.frombuffer(raw, np.int32).reshape(n, num_tiles).copy()
