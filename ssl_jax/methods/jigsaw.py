"""Jigsaw puzzles (Noroozi & Favaro 2016): which permutation shuffled the 9 tiles?"""

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from ssl_jax.augment import patches
from ssl_jax.methods.late_fusion import PatchClassification


@dataclasses.dataclass(frozen=True, kw_only=True)
class Jigsaw(PatchClassification):
    """Jigsaw puzzles: classify the permutation of 3x3 shuffled tiles among a fixed set.

    Each view is cut into a ``grid x grid`` grid of tiles, placed either as in the paper
    (``cell_size``: one ``tile_size`` tile per cell at a random offset, random gaps against
    edge continuity) or spaced (``gap``: tiles ``tile_size + gap`` apart, each moved by up
    to ``jitter`` px, so the gap never drops below ``gap - 2 jitter``;
    :func:`ssl_jax.augment.patches.spaced_tile_positions`), each colour channel optionally
    shifted by up to ``channel_shift`` px (against chromatic aberration); the tiles are
    shuffled by a permutation drawn from ``permutations`` and each tile is optionally
    normalised on its own (``tile_norm``, against matching by low-level statistics)
    (:func:`ssl_jax.augment.patches.jigsaw_puzzle`). ``net`` is the
    context-free network: the shared encoder per tile, the ``grid^2`` features
    concatenated, an MLP to ``len(permutations)`` classes. The loss is the cross entropy of
    the permutation index, logged as ``jigsaw`` with its accuracy ``jigsaw_acc``.

    :meth:`encode` normalises whole images as the tiles are (:meth:`preprocess`; nothing
    with ``tile_norm = 'none'``) before the encoder. Collapse monitors get the features of the
    tiles in the first two input slots; the online probe the mean of all tile features.

    Attributes:
      permutations: the permutation set as a tuple of ``grid^2``-tuples (hashable; see
        :func:`ssl_jax.augment.patches.maximal_hamming_permutations`); class ``i`` is
        ``permutations[i]``, input slot ``j`` holds tile ``permutations[i][j]``.
      cell_size: side of a grid cell in view pixels (paper: 75 of a 225-px crop), or None
        for spaced tiles.
      tile_size: side of a tile (paper: 64).
      gap: pixels between spaced tiles before jitter, or None for the cell placement;
        exactly one of ``cell_size`` and ``gap`` is given.
      jitter: per-tile jitter of spaced tiles (0 with cells).
      grid: cells per side (3).
      channel_shift: maximal spatial shift of each colour channel (paper: 2 px; 0: off).
      tile_norm: ``'tile'`` (mean/std over the tile's pixels and channels), ``'channel'``
        (per channel) or ``'none'``.

    References:
      Noroozi & Favaro, "Unsupervised Learning of Visual Representations by Solving Jigsaw
      Puzzles", ECCV 2016 (Sec. 3.1-3.3, Algorithm 1).
    """

    permutations: tuple[tuple[int, ...], ...]
    tile_size: int
    cell_size: int | None = None
    gap: int | None = None
    jitter: int = 0
    grid: int = 3
    channel_shift: int = 0
    tile_norm: str = "tile"

    name: ClassVar[str] = "jigsaw"

    def __post_init__(self):
        super().__post_init__()
        n_tiles = self.grid * self.grid
        perms = self.permutations
        if not perms or any(sorted(p) != list(range(n_tiles)) for p in perms):
            raise ValueError(f"permutations must be non-empty permutations of 0..{n_tiles - 1}")
        if len(set(perms)) != len(perms):
            raise ValueError("permutations must not repeat")
        if self.tile_norm not in patches.TILE_NORMS:
            raise ValueError(
                f"tile_norm must be one of {patches.TILE_NORMS}, got {self.tile_norm!r}"
            )
        patches.jigsaw_size(
            tile_size=self.tile_size,
            cell_size=self.cell_size,
            gap=self.gap,
            jitter=self.jitter,
            grid=self.grid,
            margin=self.channel_shift,
        )
        self.check_classes(len(perms))

    def pretext(self, key, view):
        return patches.jigsaw_puzzle(
            key,
            view,
            jnp.asarray(self.permutations, jnp.int32),
            cell_size=self.cell_size,
            tile_size=self.tile_size,
            grid=self.grid,
            channel_shift=self.channel_shift,
            tile_norm=self.tile_norm,
            gap=self.gap,
            jitter=self.jitter,
        )

    def preprocess(self, images):
        return patches.standardize_tiles(images, mode=self.tile_norm)

    def probe_features(self, h):
        return jnp.mean(h, axis=1)
