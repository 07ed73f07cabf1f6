"""Pretext targets made of image patches: relative patch position and jigsaw puzzles.

Random ops take an explicit key and ONE image ``[H, W, C]`` (batch them with ``jax.vmap``
over per-image keys); every size is a static Python int, so the ops trace once and run
under ``jax.jit``. Patches are cut with ``lax.dynamic_slice`` at integer pixel positions
that are always inside the image (the geometry is checked up front, never clamped).
:func:`ssl_jax.augment.permutations.maximal_hamming_permutations` picks the jigsaw
permutation set.

References:
  Doersch, Gupta & Efros, "Unsupervised Visual Representation Learning by Context
  Prediction", ICCV 2015 (Sec. 3, 3.1: 8 neighbour positions, gap, jitter, colour dropping);
  Noroozi & Favaro, "Unsupervised Learning of Visual Representations by Solving Jigsaw
  Puzzles", ECCV 2016 (Sec. 3.2-3.3: tiles in a 3x3 grid of cells, per-tile
  normalisation, colour-channel jitter).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

NEIGHBOUR_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
"""Grid step ``(dy, dx)`` of the second patch relative to the first for labels 0..7: Doersch
et al.'s Fig. 2 numbering 1..8 (row-major around the centre: top-left, top, top-right, left,
right, bottom-left, bottom, bottom-right), counted from 0. ``dy > 0`` is down."""
NUM_POSITIONS = 8
"""Number of relative patch positions (classes of the patch-position task)."""
PATCH_GRIDS = (3, 2)
"""Grids of the patch-position task: the paper's 3x3 (centre patch and one of its 8
neighbours) and a 2x2 (any cell and one of the other 3), whose cells are half the image
wide instead of a third."""
TILE_NORMS = ("tile", "channel", "none")
"""Per-tile normalisations: over all pixels and channels, per channel, or none."""


def _check_image(image: jax.Array) -> None:
    if image.ndim != 3:
        raise ValueError(f"expected one image [H, W, C], got shape {image.shape}; vmap over it")
    if image.shape[0] != image.shape[1]:
        raise ValueError(f"expected a square image, got {image.shape[0]}x{image.shape[1]}")


def _check_int(value: int, name: str, minimum: int) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def patch_grid_size(*, patch_size: int, gap: int, jitter: int, grid: int = 3) -> int:
    """Side of the square an ``n x n`` grid of jittered patches needs: ``nP + (n-1)G + 2J``.

    Args:
      patch_size: patch side ``P`` in pixels (>= 1).
      gap: pixels between neighbouring grid cells ``G`` (>= 0).
      jitter: each patch moves by up to ``J`` pixels in each direction (>= 0).
      grid: cells per side ``n``, one of :data:`PATCH_GRIDS`.

    Returns:
      The smallest image side that holds every patch pair.
    """
    _check_int(patch_size, "patch_size", 1)
    if grid not in PATCH_GRIDS:
        raise ValueError(f"grid must be one of {PATCH_GRIDS}, got {grid!r}")
    return spaced_grid_size(tile_size=patch_size, gap=gap, jitter=jitter, grid=grid)


def patch_pair_positions(
    key: jax.Array, image_size: int, *, patch_size: int, gap: int, jitter: int, grid: int = 3
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Top-left corners of a patch and of one of its neighbours, with the neighbour's label.

    A ``grid x grid`` grid of ``P``-pixel cells ``P + G`` apart is placed uniformly where its
    jittered patches fit. With ``grid = 3`` (the paper) the first patch is the grid's
    centre and the second the cell ``label`` names (:data:`NEIGHBOUR_OFFSETS`, uniform over
    the 8); with ``grid = 2`` the first is a uniform cell and the second a uniform other
    cell, ``label`` the step between them (horizontal and vertical steps 1/6 each,
    diagonal ones 1/12). Each patch is moved by its own uniform integer jitter in
    ``[-J, J]`` per axis. The gap between the two patches is therefore ``G + (j2 - j1)``
    along the axis they are adjacent on, never less than ``G - 2J``.

    Args:
      key: PRNG key.
      image_size: side of the (square) image.
      patch_size: ``P``.
      gap: ``G``.
      jitter: ``J``.
      grid: cells per side, one of :data:`PATCH_GRIDS`.

    Returns:
      ``(first [2], second [2], label [])``: int32 ``(y, x)`` corners and the class in 0..7.
    """
    need = patch_grid_size(patch_size=patch_size, gap=gap, jitter=jitter, grid=grid)
    if need > image_size:
        raise ValueError(
            f"a {grid}x{grid} grid of {patch_size}-px patches with gap {gap} and jitter "
            f"{jitter} needs {need} px, the image has {image_size}"
        )
    k_origin, k_label, k_jitter = jax.random.split(key, 3)
    step = patch_size + gap
    hi = image_size - need + jitter  # last origin whose grid fits
    origin = jax.random.randint(k_origin, (2,), jitter, hi + 1, dtype=jnp.int32)
    shifts = jax.random.randint(k_jitter, (2, 2), -jitter, jitter + 1, dtype=jnp.int32)
    offsets = jnp.asarray(NEIGHBOUR_OFFSETS, jnp.int32)
    if grid == 3:
        label = jax.random.randint(k_label, (), 0, NUM_POSITIONS, dtype=jnp.int32)
        first_cell = jnp.ones(2, jnp.int32)
        second_cell = first_cell + offsets[label]
    else:
        k_first, k_other = jax.random.split(k_label)
        a = jax.random.randint(k_first, (), 0, 4, dtype=jnp.int32)
        b = (a + jax.random.randint(k_other, (), 1, 4, dtype=jnp.int32)) % 4
        first_cell, second_cell = jnp.stack(jnp.divmod(a, 2)), jnp.stack(jnp.divmod(b, 2))
        step_cells = second_cell - first_cell
        label = jnp.argmax(jnp.all(offsets == step_cells, axis=1)).astype(jnp.int32)
    first = origin + first_cell * step + shifts[0]
    second = origin + second_cell * step + shifts[1]
    return first, second, label


def crop_patch(image: jax.Array, corner: jax.Array, size: int) -> jax.Array:
    """``image[y:y+size, x:x+size]`` for a traced integer corner ``(y, x)``.

    Args:
      image: ``[H, W, C]``.
      corner: int ``[2]`` top-left ``(y, x)``; the caller keeps the window inside the image.
      size: static side of the crop.

    Returns:
      ``[size, size, C]``.
    """
    c = image.shape[-1]
    return lax.dynamic_slice(image, (corner[0], corner[1], 0), (size, size, c))


def drop_color_channels(key: jax.Array, patch: jax.Array, *, noise_scale: float = 0.01):
    """Doersch et al.'s colour dropping: keep one random channel, replace the others by noise.

    The dropped channels become Gaussian noise with a standard deviation of ``noise_scale``
    times that of the kept channel (the paper: about 1/100), so a network cannot match
    patches by chromatic aberration.

    Args:
      key: PRNG key.
      patch: ``[H, W, C]`` float.
      noise_scale: noise std relative to the kept channel's std.

    Returns:
      The patch, same shape and dtype.
    """
    if noise_scale < 0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
    k_keep, k_noise = jax.random.split(key)
    c = patch.shape[-1]
    keep = jax.random.randint(k_keep, (), 0, c)
    kept = jnp.take(patch, keep, axis=-1)
    noise = jax.random.normal(k_noise, patch.shape, patch.dtype) * noise_scale * jnp.std(kept)
    return jnp.where(jnp.arange(c) == keep, patch, noise)


def patch_pair(
    key: jax.Array,
    image: jax.Array,
    *,
    patch_size: int,
    gap: int,
    jitter: int,
    color_drop: bool = False,
    grid: int = 3,
) -> tuple[jax.Array, jax.Array]:
    """One relative-position example: a patch, a neighbour and the neighbour's label.

    Args:
      key: PRNG key.
      image: ``[S, S, C]`` float (a view).
      patch_size: patch side ``P``.
      gap: pixels between grid cells ``G``.
      jitter: per-patch jitter ``J``.
      color_drop: apply :func:`drop_color_channels` to each patch independently.
      grid: cells per side (:func:`patch_pair_positions`).

    Returns:
      ``(patches [2, P, P, C], label [])``: the first patch (the centre of a 3x3 grid), then
      the neighbour.
    """
    _check_image(image)
    k_pos, k_drop = jax.random.split(key)
    first, second, label = patch_pair_positions(
        k_pos, image.shape[0], patch_size=patch_size, gap=gap, jitter=jitter, grid=grid
    )
    patches = jnp.stack(
        [crop_patch(image, first, patch_size), crop_patch(image, second, patch_size)]
    )
    if color_drop:
        patches = jax.vmap(drop_color_channels)(jax.random.split(k_drop, 2), patches)
    return patches, label


def _grid_corners(grid: int, step: int) -> jax.Array:
    """int32 ``[grid * grid, 2]``: ``(row, col) * step`` of every cell, row-major."""
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    return jnp.asarray(np.stack([rows, cols], -1) * step, jnp.int32)


def jigsaw_grid_size(*, cell_size: int, tile_size: int, grid: int = 3, margin: int = 0) -> int:
    """Side of the square a jigsaw grid needs, ``grid * cell_size + 2 * margin``.

    Args:
      cell_size: side of a grid cell (>= 1).
      tile_size: side of a tile, in ``[1, cell_size]``.
      grid: cells per side (>= 2).
      margin: free pixels around the grid (>= 0).

    Returns:
      The smallest image side that holds the grid.
    """
    _check_int(grid, "grid", 2)
    _check_int(cell_size, "cell_size", 1)
    _check_int(tile_size, "tile_size", 1)
    _check_int(margin, "margin", 0)
    if tile_size > cell_size:
        raise ValueError(f"tile_size ({tile_size}) must be <= cell_size ({cell_size})")
    return grid * cell_size + 2 * margin


def jigsaw_tile_positions(
    key: jax.Array,
    image_size: int,
    *,
    cell_size: int,
    tile_size: int,
    grid: int = 3,
    margin: int = 0,
) -> jax.Array:
    """Top-left corners of one tile per cell of a ``grid x grid`` grid, in row-major order.

    The grid of ``cell_size`` cells is placed uniformly where it fits with ``margin`` free
    pixels on each side; each tile sits at a uniform integer offset in
    ``[0, cell_size - tile_size]`` inside its cell (Noroozi & Favaro: 64-px tiles in 75-px
    cells of a 225-px crop), so neighbouring tiles are 0 to ``2 (cell - tile)`` px apart.

    Args:
      key: PRNG key.
      image_size: side of the square image.
      cell_size: side of a grid cell.
      tile_size: side of a tile, ``<= cell_size``.
      grid: cells per side (3: 9 tiles).
      margin: pixels kept free around the grid (room for colour-channel shifts).

    Returns:
      int32 ``[grid * grid, 2]`` ``(y, x)`` corners; tile ``i`` is cell ``(i // grid, i % grid)``.
    """
    need = jigsaw_grid_size(cell_size=cell_size, tile_size=tile_size, grid=grid, margin=margin)
    if need > image_size:
        raise ValueError(
            f"a {grid}x{grid} grid of {cell_size}-px cells with margin {margin} needs "
            f"{need} px, the image has {image_size}"
        )
    span = grid * cell_size
    k_origin, k_tiles = jax.random.split(key)
    origin = jax.random.randint(k_origin, (2,), margin, image_size - span - margin + 1, jnp.int32)
    cells = _grid_corners(grid, cell_size)
    offsets = jax.random.randint(k_tiles, (grid * grid, 2), 0, cell_size - tile_size + 1)
    return origin + cells + offsets.astype(jnp.int32)


def spaced_grid_size(
    *, tile_size: int, gap: int, jitter: int = 0, grid: int = 3, margin: int = 0
) -> int:
    """Side of the square a spaced jigsaw grid needs, ``nT + (n-1)G + 2J + 2M``.

    Args:
      tile_size: side of a tile ``T`` (>= 1).
      gap: pixels between neighbouring tiles before jitter ``G`` (>= 0).
      jitter: each tile moves by up to ``J`` pixels in each direction (>= 0).
      grid: tiles per side ``n`` (>= 2).
      margin: free pixels around the grid ``M`` (>= 0).

    Returns:
      The smallest image side that holds every jittered grid.
    """
    _check_int(grid, "grid", 2)
    _check_int(tile_size, "tile_size", 1)
    _check_int(gap, "gap", 0)
    _check_int(jitter, "jitter", 0)
    _check_int(margin, "margin", 0)
    return grid * tile_size + (grid - 1) * gap + 2 * jitter + 2 * margin


def spaced_tile_positions(
    key: jax.Array,
    image_size: int,
    *,
    tile_size: int,
    gap: int,
    jitter: int = 0,
    grid: int = 3,
    margin: int = 0,
) -> jax.Array:
    """Top-left corners of a ``grid x grid`` grid of tiles ``tile_size + gap`` apart.

    The geometry of Doersch et al.'s patch grid (:func:`patch_pair_positions`) for all
    ``grid^2`` tiles: the grid is placed uniformly where it fits with room for the jitter
    and ``margin``, and each tile moves by its own uniform integer jitter in ``[-J, J]``
    per axis, so neighbouring tiles are ``G - 2J`` to ``G + 2J`` px apart. Unlike the cell
    placement (:func:`jigsaw_tile_positions`, gaps from 0), the gap has a floor: tiles never
    touch when ``G > 2J``, so no puzzle can be solved from continuity across a border.

    Args:
      key: PRNG key.
      image_size: side of the square image.
      tile_size: side of a tile ``T``.
      gap: pixels between neighbouring tiles before jitter ``G``.
      jitter: per-tile jitter ``J``.
      grid: tiles per side.
      margin: pixels kept free around the grid (room for colour-channel shifts).

    Returns:
      int32 ``[grid * grid, 2]`` ``(y, x)`` corners; tile ``i`` is grid cell
      ``(i // grid, i % grid)``.
    """
    need = spaced_grid_size(tile_size=tile_size, gap=gap, jitter=jitter, grid=grid, margin=margin)
    if need > image_size:
        raise ValueError(
            f"a {grid}x{grid} grid of {tile_size}-px tiles with gap {gap}, jitter {jitter} "
            f"and margin {margin} needs {need} px, the image has {image_size}"
        )
    k_origin, k_jitter = jax.random.split(key)
    lo = margin + jitter
    origin = jax.random.randint(k_origin, (2,), lo, image_size - need + lo + 1, jnp.int32)
    cells = _grid_corners(grid, tile_size + gap)
    shifts = jax.random.randint(k_jitter, (grid * grid, 2), -jitter, jitter + 1, jnp.int32)
    return origin + cells + shifts


def shifted_crop(image: jax.Array, corner: jax.Array, shifts: jax.Array, size: int) -> jax.Array:
    """A crop whose colour channels are cut at different offsets (colour-channel jitter).

    Args:
      image: ``[H, W, C]``.
      corner: int ``[2]`` top-left of the crop.
      shifts: int ``[C, 2]`` per-channel ``(dy, dx)`` added to ``corner``.
      size: static side of the crop.

    Returns:
      ``[size, size, C]`` with channel ``c`` equal to ``image[y+dy_c : ..., x+dx_c : ..., c]``.
    """
    planes = jnp.moveaxis(image, -1, 0)  # [C, H, W]
    cut = jax.vmap(lambda p, s: lax.dynamic_slice(p, tuple(corner + s), (size, size)))
    return jnp.moveaxis(cut(planes, shifts), 0, -1)


def standardize_tiles(x: jax.Array, *, mode: str = "tile", eps: float = 1e-5) -> jax.Array:
    """Per-tile (or per-image) normalisation: zero mean and unit variance.

    Noroozi & Favaro normalise "the mean and the standard deviation of each patch
    independently", so that adjacent tiles cannot be matched by low-level statistics.

    Args:
      x: ``[..., H, W, C]`` float; the statistics are over the last three axes.
      mode: ``'tile'`` (over all pixels and channels), ``'channel'`` (over pixels, per
        channel) or ``'none'`` (returned unchanged).
      eps: added to the variance (a flat tile maps to zeros, not NaN).

    Returns:
      ``(x - mean) / sqrt(var + eps)``, same shape.
    """
    if mode not in TILE_NORMS:
        raise ValueError(f"mode must be one of {TILE_NORMS}, got {mode!r}")
    if x.ndim < 3:
        raise ValueError(f"expected [..., H, W, C], got shape {x.shape}")
    if mode == "none":
        return x
    axes = (-3, -2, -1) if mode == "tile" else (-3, -2)
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=axes, keepdims=True)
    return ((x32 - mean) * lax.rsqrt(var + eps)).astype(x.dtype)


def _check_placement(cell_size: int | None, gap: int | None, jitter: int) -> None:
    if (cell_size is None) == (gap is None):
        raise ValueError(
            "give exactly one of cell_size (tiles in cells) and gap (spaced tiles), got "
            f"cell_size={cell_size!r}, gap={gap!r}"
        )
    if gap is None and jitter:
        raise ValueError(f"jitter applies to spaced tiles (gap), got jitter={jitter!r}")


def jigsaw_size(
    *,
    tile_size: int,
    cell_size: int | None = None,
    gap: int | None = None,
    jitter: int = 0,
    grid: int = 3,
    margin: int = 0,
) -> int:
    """Side of the square a jigsaw grid needs, in either placement.

    Args:
      tile_size: side of a tile.
      cell_size: side of a grid cell (:func:`jigsaw_grid_size`), or None.
      gap: pixels between spaced tiles (:func:`spaced_grid_size`), or None; exactly one of
        ``cell_size`` and ``gap`` is given.
      jitter: per-tile jitter of spaced tiles (0 with cells).
      grid: cells per side.
      margin: free pixels around the grid.

    Returns:
      The smallest image side that holds the grid.
    """
    _check_placement(cell_size, gap, jitter)
    if gap is None:
        return jigsaw_grid_size(cell_size=cell_size, tile_size=tile_size, grid=grid, margin=margin)
    return spaced_grid_size(tile_size=tile_size, gap=gap, jitter=jitter, grid=grid, margin=margin)


def jigsaw_corners(
    key: jax.Array,
    image_size: int,
    *,
    tile_size: int,
    cell_size: int | None = None,
    gap: int | None = None,
    jitter: int = 0,
    grid: int = 3,
    margin: int = 0,
) -> jax.Array:
    """Tile corners in either placement (arguments as :func:`jigsaw_size`).

    Returns:
      int32 ``[grid * grid, 2]`` ``(y, x)`` corners in row-major grid order.
    """
    _check_placement(cell_size, gap, jitter)
    if gap is None:
        return jigsaw_tile_positions(
            key, image_size, cell_size=cell_size, tile_size=tile_size, grid=grid, margin=margin
        )
    return spaced_tile_positions(
        key, image_size, tile_size=tile_size, gap=gap, jitter=jitter, grid=grid, margin=margin
    )


def jigsaw_puzzle(
    key: jax.Array,
    image: jax.Array,
    permutations: jax.Array,
    *,
    cell_size: int | None = None,
    tile_size: int,
    grid: int = 3,
    channel_shift: int = 0,
    tile_norm: str = "tile",
    gap: int | None = None,
    jitter: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """One jigsaw example: shuffled, normalised tiles and the index of their permutation.

    Tiles come from :func:`jigsaw_tile_positions` (``cell_size``: the paper's cells) or
    :func:`spaced_tile_positions` (``gap`` and ``jitter``); exactly one of ``cell_size``
    and ``gap`` is given. With ``channel_shift = k`` each colour channel of each tile is
    cut at its own uniform offset in ``[-k, k]^2`` (the paper's guard against chromatic
    aberration). A permutation ``p`` is drawn uniformly from
    ``permutations`` and input slot ``j`` receives tile ``p[j]`` (the convention of the
    authors' data layer); each tile is then normalised on its own (:func:`standardize_tiles`).

    Args:
      key: PRNG key.
      image: ``[S, S, C]`` float (a view).
      permutations: int ``[N, grid * grid]`` permutation set
        (:func:`ssl_jax.augment.permutations.maximal_hamming_permutations`).
      cell_size: side of a grid cell (the cell placement).
      tile_size: side of a tile.
      grid: cells per side.
      channel_shift: maximal per-channel shift ``k`` in pixels (0: off).
      tile_norm: ``'tile'``, ``'channel'`` or ``'none'``.
      gap: pixels between neighbouring tiles before jitter (the spaced placement).
      jitter: per-tile jitter of the spaced placement.

    Returns:
      ``(tiles [grid^2, T, T, C], label [])``: the shuffled tiles and the row of
      ``permutations`` used.
    """
    _check_image(image)
    _check_int(channel_shift, "channel_shift", 0)
    if permutations.ndim != 2 or permutations.shape[1] != grid * grid:
        raise ValueError(
            f"permutations must be [N, {grid * grid}] for a {grid}x{grid} grid, "
            f"got shape {permutations.shape}"
        )
    k_pos, k_shift, k_perm = jax.random.split(key, 3)
    corners = jigsaw_corners(
        k_pos,
        image.shape[0],
        cell_size=cell_size,
        tile_size=tile_size,
        grid=grid,
        margin=channel_shift,
        gap=gap,
        jitter=jitter,
    )
    n_tiles, c = grid * grid, image.shape[-1]
    shifts = jax.random.randint(
        k_shift, (n_tiles, c, 2), -channel_shift, channel_shift + 1, jnp.int32
    )
    tiles = jax.vmap(lambda y, s: shifted_crop(image, y, s, tile_size))(corners, shifts)
    label = jax.random.randint(k_perm, (), 0, permutations.shape[0], jnp.int32)
    shuffled = tiles[jnp.asarray(permutations, jnp.int32)[label]]
    return standardize_tiles(shuffled, mode=tile_norm), label
