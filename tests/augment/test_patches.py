"""Patch-position pairs and jigsaw puzzles against numpy models of the papers' geometry;
the maximal-Hamming permutation set against a plain re-implementation and brute force."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.augment import patches as P
from ssl_jax.augment.permutations import hamming_distances, maximal_hamming_permutations

# -- plain-numpy geometry (Doersch et al. 2015, Sec. 3; Noroozi & Favaro 2016, Sec. 3.3) -----
# Doersch et al.'s Fig. 2: neighbours 1..8 row-major around the centre, here 0..7.
DIRECTIONS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def pair_cells(grid):
    """(first cell, second cell, label) of every pair the grid's task draws: for the paper's
    3x3 grid the centre and each of its 8 neighbours, for a 2x2 grid every ordered pair of
    distinct cells (each is a neighbour of the other); the label is the step between them."""
    cells = list(itertools.product(range(grid), repeat=2))
    firsts = [(1, 1)] if grid == 3 else cells
    return [
        (a, b, DIRECTIONS.index((b[0] - a[0], b[1] - a[1])))
        for a in firsts
        for b in cells
        if b != a and max(abs(b[0] - a[0]), abs(b[1] - a[1])) == 1
    ]


def pair_support(s, p, g, j, grid=3):
    """Every (first_y, first_x, second_y, second_x, label) the grid can produce: grid origin
    o (cell (0, 0) before jitter) with room for the jitter, the pair's cells (pair_cells),
    each patch moved by its own jitter in [-j, j]^2."""
    out = set()
    origins = range(j, s - grid * p - (grid - 1) * g - j + 1)
    shifts = range(-j, j + 1)
    for oy, ox in itertools.product(origins, origins):
        for (ay, ax), (by, bx), label in pair_cells(grid):
            for a, b, c, d in itertools.product(shifts, repeat=4):
                first = (oy + ay * (p + g) + a, ox + ax * (p + g) + b)
                second = (oy + by * (p + g) + c, ox + bx * (p + g) + d)
                out.add((*first, *second, label))
    return out


def pair_is_valid(first, second, label, s, p, g, j, grid=3) -> bool:
    """Does some grid origin, pair of cells with this label and jitter put the pair there?
    (interval intersection per axis)"""
    last = s - grid * p - (grid - 1) * g - j
    for a, b, lab in pair_cells(grid):
        if lab != label:
            continue
        ok = True
        for axis in (0, 1):
            lo = max(j, first[axis] - a[axis] * (p + g) - j, second[axis] - b[axis] * (p + g) - j)
            hi = min(
                last, first[axis] - a[axis] * (p + g) + j, second[axis] - b[axis] * (p + g) + j
            )
            ok = ok and lo <= hi
        if ok:
            return True
    return False


def coord_image(s):
    """Pixel (y, x) holds (y, x, y * s + x): a cut patch tells where it came from."""
    y, x = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    return np.stack([y, x, y * s + x], -1).astype(np.float32)


def tiles_are_valid(corners, s, cell, tile, grid=3, margin=0) -> bool:
    """Is there a grid origin (margin <= o <= s - grid*cell - margin) with every tile i inside
    cell (i // grid, i % grid) at an offset in [0, cell - tile]?"""
    rc = np.stack(np.divmod(np.arange(grid * grid), grid), -1) * cell
    rel = np.asarray(corners) - rc  # = origin + offset
    lo = np.maximum(rel.max(0) - (cell - tile), margin)
    hi = np.minimum(rel.min(0), s - grid * cell - margin)
    return bool(np.all(lo <= hi))


def spaced_are_valid(corners, s, tile, gap, jitter, grid, margin=0) -> bool:
    """Is there a grid origin (margin + J <= o <= s - need + margin + J, need = grid*T +
    (grid-1)*G + 2J + 2M) with every tile i within J of o + cell_i * (T + G)?"""
    rc = np.stack(np.divmod(np.arange(grid * grid), grid), -1) * (tile + gap)
    rel = np.asarray(corners) - rc  # = origin + shift, |shift| <= J
    need = grid * tile + (grid - 1) * gap + 2 * jitter + 2 * margin
    lo = np.maximum(rel.max(0) - jitter, margin + jitter)
    hi = np.minimum(rel.min(0) + jitter, s - need + margin + jitter)
    return bool(np.all(lo <= hi))


def keys(n, seed=0):
    return jax.random.split(jax.random.key(seed), n)


# -- relative patch position --------------------------------------------------------------
GEOMETRIES = [(32, 8, 3, 1), (40, 6, 4, 2), (20, 4, 2, 0), (12, 3, 1, 0)]


@pytest.mark.parametrize("s,p,g,j", GEOMETRIES)
def test_pair_positions_obey_the_grid_gap_and_jitter(s, p, g, j):
    n = 3000
    fn = jax.jit(jax.vmap(lambda k: P.patch_pair_positions(k, s, patch_size=p, gap=g, jitter=j)))
    first, second, label = map(np.asarray, fn(keys(n)))
    assert first.dtype == second.dtype == label.dtype == np.int32
    assert set(np.unique(label)) == set(range(8))
    counts = np.bincount(label, minlength=8)
    assert np.all(np.abs(counts - n / 8) < 5 * np.sqrt(n / 8))  # uniform labels
    for f, sec, lab in zip(first, second, label, strict=True):
        assert pair_is_valid(f, sec, lab, s, p, g, j), (f, sec, lab)
    # Both patches inside the image; along an axis where the neighbour moved one cell the
    # patches are G +- 2J apart (never overlapping when G >= 2J), along a still axis they
    # are offset by at most 2J.
    for corner in (first, second):
        assert corner.min() >= 0 and corner.max() <= s - p
    d = np.asarray(DIRECTIONS)[label]
    delta = second - first
    np.testing.assert_array_less(np.abs(delta - d * (p + g)), 2 * j + 1)
    gap = np.where(d != 0, np.abs(delta) - p, 0)
    assert np.all(gap[d != 0] >= g - 2 * j) and np.all(gap[d != 0] <= g + 2 * j)
    # The jitter is used over its whole range.
    rel = delta - d * (p + g)
    assert rel.min() == -2 * j and rel.max() == 2 * j


@pytest.mark.parametrize("s,p,g,j", [(32, 8, 3, 1), (12, 3, 1, 0)])
def test_pair_positions_cover_exactly_the_support_of_the_paper_geometry(s, p, g, j):
    support = pair_support(s, p, g, j)
    n = 12 * len(support)
    fn = jax.jit(jax.vmap(lambda k: P.patch_pair_positions(k, s, patch_size=p, gap=g, jitter=j)))
    first, second, label = map(np.asarray, fn(keys(n, seed=1)))
    seen = {(*f, *sec, int(lab)) for f, sec, lab in zip(first, second, label, strict=True)}
    assert seen == support


GEOMETRIES_2X2 = [(32, 9, 12, 1), (32, 13, 3, 1), (20, 8, 2, 1), (9, 4, 1, 0)]  # first: CIFAR


@pytest.mark.parametrize("s,p,g,j", GEOMETRIES_2X2)
def test_2x2_pairs_are_two_distinct_cells_with_the_step_as_label(s, p, g, j):
    n = 6000
    fn = jax.jit(
        jax.vmap(lambda k: P.patch_pair_positions(k, s, patch_size=p, gap=g, jitter=j, grid=2))
    )
    first, second, label = map(np.asarray, fn(keys(n, seed=3)))
    assert first.dtype == second.dtype == label.dtype == np.int32
    for f, sec, lab in zip(first, second, label, strict=True):
        assert pair_is_valid(f, sec, lab, s, p, g, j, grid=2), (f, sec, lab)
    for corner in (first, second):
        assert corner.min() >= 0 and corner.max() <= s - p
    # A uniform first cell and a uniform other cell: horizontal and vertical steps 1/6
    # each, diagonal ones 1/12.
    want = np.array([1 / 12 if dy and dx else 1 / 6 for dy, dx in DIRECTIONS])
    freq = np.bincount(label, minlength=8) / n
    np.testing.assert_array_less(np.abs(freq - want), 5 * np.sqrt(want / n))
    # The step fixes the label; gaps as in the 3x3 grid.
    d = np.asarray(DIRECTIONS)[label]
    delta = second - first
    np.testing.assert_array_less(np.abs(delta - d * (p + g)), 2 * j + 1)
    gap = np.where(d != 0, np.abs(delta) - p, 0)
    assert np.all(gap[d != 0] >= g - 2 * j)


@pytest.mark.parametrize("s,p,g,j", [(9, 4, 1, 0), (12, 4, 1, 1)])
def test_2x2_pairs_cover_exactly_their_support(s, p, g, j):
    support = pair_support(s, p, g, j, grid=2)
    n = 40 * len(support)
    fn = jax.jit(
        jax.vmap(lambda k: P.patch_pair_positions(k, s, patch_size=p, gap=g, jitter=j, grid=2))
    )
    first, second, label = map(np.asarray, fn(keys(n, seed=4)))
    seen = {(*f, *sec, int(lab)) for f, sec, lab in zip(first, second, label, strict=True)}
    assert seen == support


def test_patch_pair_cuts_those_pixels_eagerly_under_jit_and_vmap():
    s, p, g, j = 32, 8, 3, 1
    image = coord_image(s)
    fn = lambda k, x: P.patch_pair(k, x, patch_size=p, gap=g, jitter=j)
    ks = keys(64, seed=2)
    batched = jax.jit(jax.vmap(fn, in_axes=(0, None)))(ks, jnp.asarray(image))
    for i in range(4):  # eager single-image calls agree with the jitted batch
        eager = fn(ks[i], jnp.asarray(image))
        np.testing.assert_array_equal(eager[0], batched[0][i])
        assert int(eager[1]) == int(batched[1][i])
    pairs, labels = map(np.asarray, batched)
    assert pairs.shape == (64, 2, p, p, 3) and labels.shape == (64,)
    for pair, lab in zip(pairs, labels, strict=True):
        corners = [tuple(int(v) for v in pair[k, 0, 0, :2]) for k in range(2)]
        for k, (y, x) in enumerate(corners):
            np.testing.assert_array_equal(pair[k], image[y : y + p, x : x + p])
        assert pair_is_valid(*corners, lab, s, p, g, j)
        dy, dx = DIRECTIONS[lab]  # label meaning: where the second patch lies
        assert np.sign(round((corners[1][0] - corners[0][0]) / (p + g))) == dy
        assert np.sign(round((corners[1][1] - corners[0][1]) / (p + g))) == dx


def test_colour_dropping_keeps_one_channel_and_adds_faint_noise():
    rng = np.random.default_rng(0)
    patch = jnp.asarray(rng.normal(size=(12, 12, 3)) * np.array([1.0, 2.0, 3.0]), jnp.float32)
    out = np.asarray(jax.jit(jax.vmap(P.drop_color_channels, (0, None)))(keys(600), patch))
    kept = []
    for o in out:
        same = [c for c in range(3) if np.array_equal(o[..., c], np.asarray(patch[..., c]))]
        assert len(same) == 1
        c = same[0]
        kept.append(c)
        noise = np.delete(o, c, axis=-1)
        ratio = noise.std() / np.asarray(patch[..., c]).std()
        assert 0.007 < ratio < 0.013, ratio  # the paper's ~1/100 of the kept channel's std
    assert np.all(np.abs(np.bincount(kept, minlength=3) - 200) < 60)
    # Through patch_pair: each patch of a pair keeps one (integer-valued) coordinate channel.
    fn = lambda k: P.patch_pair(
        k, jnp.asarray(coord_image(32)), patch_size=8, gap=3, jitter=1, color_drop=True
    )
    pairs = np.asarray(jax.jit(jax.vmap(fn))(keys(20, seed=9))[0])
    assert pairs.shape == (20, 2, 8, 8, 3)
    integral = np.all(pairs == np.round(pairs), axis=(2, 3))  # [20, 2, 3]
    np.testing.assert_array_equal(integral.sum(-1), 1)


# -- jigsaw ---------------------------------------------------------------------------------
JIGSAW = [(32, 10, 9, 0), (32, 10, 8, 1), (24, 7, 5, 0), (30, 8, 8, 3)]


@pytest.mark.parametrize("s,cell,tile,margin", JIGSAW)
def test_tile_positions_one_per_cell_with_jitter_in_range(s, cell, tile, margin):
    fn = jax.jit(
        jax.vmap(
            lambda k: P.jigsaw_tile_positions(k, s, cell_size=cell, tile_size=tile, margin=margin)
        )
    )
    corners = np.asarray(fn(keys(2000)))
    assert corners.shape == (2000, 9, 2) and corners.dtype == np.int32
    assert all(tiles_are_valid(c, s, cell, tile, margin=margin) for c in corners)
    # Offsets inside the cells cover [0, cell - tile] when the grid cannot move.
    if s == 3 * cell + 2 * margin:
        rc = np.stack(np.divmod(np.arange(9), 3), -1) * cell
        offsets = corners - rc - margin
        assert offsets.min() == 0 and offsets.max() == cell - tile


@pytest.mark.parametrize("cell,tile", [(10, 10), (10, 9), (8, 5)])
def test_jigsaw_tiles_are_the_permuted_cells_and_reassemble_the_crop(cell, tile):
    s = 32
    image = coord_image(s)
    perms = maximal_hamming_permutations(20, seed=3)
    fn = lambda k, x: P.jigsaw_puzzle(
        k, x, jnp.asarray(perms), cell_size=cell, tile_size=tile, tile_norm="none"
    )
    ks = keys(40, seed=4)
    tiles, labels = map(np.asarray, jax.jit(jax.vmap(fn, (0, None)))(ks, jnp.asarray(image)))
    eager = fn(ks[0], jnp.asarray(image))
    np.testing.assert_array_equal(eager[0], tiles[0])
    assert tiles.shape == (40, 9, tile, tile, 3) and set(labels) <= set(range(20))
    for shuffled, lab in zip(tiles, labels, strict=True):
        perm = perms[lab]
        in_grid_order = np.empty_like(shuffled)
        in_grid_order[perm] = shuffled  # slot j holds tile perm[j]
        corners = in_grid_order[:, 0, 0, :2].astype(int)
        assert tiles_are_valid(corners, s, cell, tile)
        for t, (y, x) in zip(in_grid_order, corners, strict=True):
            np.testing.assert_array_equal(t, image[y : y + tile, x : x + tile])
        if tile == cell:  # no gaps: the 3x3 tiles are exactly the crop
            y, x = corners[0]
            rows = [
                np.concatenate(list(in_grid_order[3 * r : 3 * r + 3]), axis=1) for r in range(3)
            ]
            np.testing.assert_array_equal(
                np.concatenate(rows, axis=0), image[y : y + 3 * cell, x : x + 3 * cell]
            )


# (image side, tile, gap, jitter, grid, margin); first: the CIFAR config
SPACED = [(32, 9, 12, 1, 2, 0), (32, 8, 3, 1, 3, 0), (40, 6, 4, 2, 3, 1), (20, 5, 2, 0, 2, 3)]


@pytest.mark.parametrize("s,tile,gap,jitter,grid,margin", SPACED)
def test_spaced_positions_keep_the_gap_and_jitter(s, tile, gap, jitter, grid, margin):
    n = 3000
    fn = jax.jit(
        jax.vmap(
            lambda k: P.spaced_tile_positions(
                k, s, tile_size=tile, gap=gap, jitter=jitter, grid=grid, margin=margin
            )
        )
    )
    corners = np.asarray(fn(keys(n, seed=5)))
    assert corners.shape == (n, grid * grid, 2) and corners.dtype == np.int32
    assert all(spaced_are_valid(c, s, tile, gap, jitter, grid, margin) for c in corners)
    assert corners.min() >= margin and corners.max() <= s - tile - margin
    # Neighbours along a row / a column are G +- 2J apart, every value of that range seen.
    cells = np.arange(grid * grid).reshape(grid, grid)
    right = corners[:, cells[:, 1:].ravel(), 1] - corners[:, cells[:, :-1].ravel(), 1]
    down = corners[:, cells[1:, :].ravel(), 0] - corners[:, cells[:-1, :].ravel(), 0]
    for step in (right, down):
        assert set(np.unique(step - tile)) == set(range(gap - 2 * jitter, gap + 2 * jitter + 1))
    # The first tile's corner (origin + jitter) takes every value the grid allows.
    need = P.spaced_grid_size(tile_size=tile, gap=gap, jitter=jitter, grid=grid, margin=margin)
    assert need == grid * tile + (grid - 1) * gap + 2 * jitter + 2 * margin
    for axis in (0, 1):
        assert set(corners[:, 0, axis]) == set(range(margin, s - need + margin + 2 * jitter + 1))


@pytest.mark.parametrize("tile,gap,jitter,grid", [(9, 12, 1, 2), (8, 3, 1, 3)])
def test_spaced_jigsaw_tiles_are_the_permuted_crops(tile, gap, jitter, grid):
    s = 32
    image = coord_image(s)
    perms = maximal_hamming_permutations(20, num_tiles=grid * grid, seed=3)
    fn = lambda k, x: P.jigsaw_puzzle(
        k,
        x,
        jnp.asarray(perms),
        tile_size=tile,
        gap=gap,
        jitter=jitter,
        grid=grid,
        tile_norm="none",
    )
    ks = keys(40, seed=6)
    tiles, labels = map(np.asarray, jax.jit(jax.vmap(fn, (0, None)))(ks, jnp.asarray(image)))
    assert tiles.shape == (40, grid * grid, tile, tile, 3) and set(labels) <= set(range(20))
    for shuffled, lab in zip(tiles, labels, strict=True):
        in_grid_order = np.empty_like(shuffled)
        in_grid_order[perms[lab]] = shuffled  # slot j holds tile perm[j]
        corners = in_grid_order[:, 0, 0, :2].astype(int)
        assert spaced_are_valid(corners, s, tile, gap, jitter, grid)
        for t, (y, x) in zip(in_grid_order, corners, strict=True):
            np.testing.assert_array_equal(t, image[y : y + tile, x : x + tile])


def test_channel_shift_cuts_each_colour_channel_at_its_own_offset():
    s, cell, tile, k = 32, 9, 8, 2
    y, x = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    image = np.repeat((y * s + x)[..., None], 3, -1).astype(np.float32)  # every channel
    perms = jnp.asarray(maximal_hamming_permutations(5))
    fn = lambda key: P.jigsaw_puzzle(
        key,
        jnp.asarray(image),
        perms,
        cell_size=cell,
        tile_size=tile,
        channel_shift=k,
        tile_norm="none",
    )
    tiles = np.asarray(jax.jit(jax.vmap(fn))(keys(300, seed=5))[0])
    spreads = []
    for t in tiles.reshape(-1, tile, tile, 3):
        corners = np.stack(np.divmod(t[0, 0].astype(int), s), -1)  # [3 channels, (y, x)]
        for c, (cy, cx) in enumerate(corners):
            assert 0 <= cy <= s - tile and 0 <= cx <= s - tile
            np.testing.assert_array_equal(t[..., c], image[cy : cy + tile, cx : cx + tile, c])
        spreads.append(corners.max(0) - corners.min(0))
    spreads = np.asarray(spreads)
    assert spreads.max() == 2 * k and spreads.min() == 0
    corner, shifts = jnp.asarray([3, 4]), jnp.asarray([[0, 0], [-2, 1], [2, -2]])
    got = np.asarray(P.shifted_crop(jnp.asarray(coord_image(s)), corner, shifts, 5))
    for c, (dy, dx) in enumerate(np.asarray(shifts)):
        np.testing.assert_array_equal(
            got[..., c], coord_image(s)[3 + dy : 8 + dy, 4 + dx : 9 + dx, c]
        )


def np_standardize(x, mode, eps=1e-5):
    x = np.asarray(x, np.float64)
    axes = (-3, -2, -1) if mode == "tile" else (-3, -2)
    mean = x.mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


@pytest.mark.parametrize("shape", [(9, 5, 5, 3), (2, 9, 4, 4, 3), (3, 6, 7, 3)])
@pytest.mark.parametrize("mode", ["tile", "channel"])
def test_standardize_tiles_values_and_gradients_match_numpy(shape, mode):
    rng = np.random.default_rng(len(shape))
    x = rng.normal(2.0, 3.0, size=shape).astype(np.float32)
    w = rng.normal(size=shape)
    got = jax.jit(lambda v: P.standardize_tiles(v, mode=mode))(jnp.asarray(x))
    np.testing.assert_allclose(got, np_standardize(x, mode), rtol=1e-4, atol=1e-5)
    grad = jax.grad(lambda v: jnp.sum(P.standardize_tiles(v, mode=mode) * w))(jnp.asarray(x))
    # Central differences of the float64 numpy reference.
    num = np.zeros(x.size)
    flat = x.astype(np.float64).ravel()
    for i in rng.choice(x.size, 20, replace=False):
        e = np.zeros_like(flat)
        e[i] = 1e-5
        f = lambda v: np.sum(np_standardize(v.reshape(shape), mode) * w)
        num[i] = (f(flat + e) - f(flat - e)) / 2e-5
        np.testing.assert_allclose(np.asarray(grad).ravel()[i], num[i], rtol=2e-3, atol=2e-4)
    np.testing.assert_array_equal(P.standardize_tiles(jnp.asarray(x), mode="none"), x)
    flat_tile = P.standardize_tiles(jnp.ones((2, 4, 4, 3)), mode=mode)
    assert np.all(np.isfinite(flat_tile)) and np.all(flat_tile == 0)


# -- the permutation set (Noroozi & Favaro, Algorithm 1) ------------------------------------
def np_greedy(n, num_tiles, seed, criterion):
    """Algorithm 1 in plain Python: all num_tiles! permutations in lexicographic order, the
    first drawn by default_rng(seed), then repeatedly the candidate with the largest min (or
    summed) Hamming distance to the chosen ones; ties to the earliest candidate."""
    cands = list(itertools.permutations(range(num_tiles)))
    chosen = [cands[int(np.random.default_rng(seed).integers(len(cands)))]]
    ham = lambda a, b: sum(u != v for u, v in zip(a, b, strict=True))
    while len(chosen) < n:
        best, best_score = None, -1
        for cand in cands:
            if cand in chosen:
                continue
            dists = [ham(cand, c) for c in chosen]
            score = min(dists) if criterion == "min" else sum(dists)
            if score > best_score:
                best, best_score = cand, score
        chosen.append(best)
    return np.asarray(chosen)


def min_pairwise(perms):
    d = np.array([[sum(u != v for u, v in zip(a, b, strict=True)) for b in perms] for a in perms])
    np.fill_diagonal(d, 10**6)
    return d.min()


@pytest.mark.parametrize("num_tiles,n", [(3, 4), (4, 4), (4, 10), (5, 12), (6, 8)])
@pytest.mark.parametrize("criterion", ["min", "mean"])
def test_permutations_match_a_plain_implementation_of_algorithm_1(num_tiles, n, criterion):
    for seed in (0, 1, 7):
        got = maximal_hamming_permutations(n, num_tiles=num_tiles, seed=seed, criterion=criterion)
        np.testing.assert_array_equal(got, np_greedy(n, num_tiles, seed, criterion))


def test_permutation_set_is_valid_unique_and_deterministic():
    perms = maximal_hamming_permutations(100)
    assert perms.shape == (100, 9) and perms.dtype == np.int32
    assert all(sorted(p) == list(range(9)) for p in perms)
    assert len({tuple(p) for p in perms}) == 100
    np.testing.assert_array_equal(perms, maximal_hamming_permutations(100))
    assert not np.array_equal(perms, maximal_hamming_permutations(100, seed=1))
    perms[0, 0] = 99  # a returned array is the caller's own copy, not the cache
    assert maximal_hamming_permutations(100)[0, 0] != 99
    d = hamming_distances(perms, perms)
    np.testing.assert_array_equal(np.diag(d), 0)
    assert min_pairwise(perms.tolist()) == d[~np.eye(100, dtype=bool)].min()


def test_max_min_greedy_step_is_optimal_by_brute_force_over_9_factorial():
    """The last pick of 10 is a permutation whose nearest chosen one is as far as any
    unchosen permutation's can be (checked against all 9! candidates)."""
    perms = maximal_hamming_permutations(10, seed=5)
    everything = np.asarray(list(itertools.permutations(range(9))), np.int8)
    nearest = hamming_distances(everything, perms[:-1]).min(1)
    is_chosen = (hamming_distances(everything, perms[:-1]) == 0).any(1)
    best = nearest[~is_chosen].max()
    assert hamming_distances(perms[-1:], perms[:-1]).min() == best


@pytest.mark.parametrize("num_tiles,n", [(3, 2), (3, 3), (4, 2), (4, 3), (4, 4)])
def test_max_min_set_reaches_the_brute_force_optimum_for_latin_sizes(num_tiles, n):
    """Up to num_tiles permutations can be pairwise disjoint (rows of a Latin square); the
    greedy max-min set reaches the best minimum distance found by trying every subset."""
    everything = list(itertools.permutations(range(num_tiles)))
    best = max(min_pairwise(s) for s in itertools.combinations(everything, n))
    assert best == num_tiles
    for seed in range(4):
        got = maximal_hamming_permutations(n, num_tiles=num_tiles, seed=seed)
        assert min_pairwise(got.tolist()) == best


# -- bad arguments --------------------------------------------------------------------------
def test_bad_arguments_raise_value_errors():
    key, img = jax.random.key(0), jnp.zeros((32, 32, 3))
    with pytest.raises(ValueError, match="needs 34 px"):
        P.patch_pair(key, img, patch_size=8, gap=4, jitter=1)
    with pytest.raises(ValueError, match="gap"):
        P.patch_grid_size(patch_size=8, gap=-1, jitter=1)
    with pytest.raises(ValueError, match="patch_size"):
        P.patch_grid_size(patch_size=0, gap=1, jitter=1)
    with pytest.raises(ValueError, match="jitter"):
        P.patch_grid_size(patch_size=4, gap=1, jitter=1.5)
    with pytest.raises(ValueError, match="grid must be one of"):
        P.patch_grid_size(patch_size=4, gap=1, jitter=1, grid=4)
    with pytest.raises(ValueError, match="a 2x2 grid of 16-px patches"):
        P.patch_pair(key, img, patch_size=16, gap=1, jitter=0, grid=2)
    with pytest.raises(ValueError, match="one image"):
        P.patch_pair(key, jnp.zeros((2, 32, 32, 3)), patch_size=8, gap=3, jitter=1)
    with pytest.raises(ValueError, match="square"):
        P.patch_pair(key, jnp.zeros((32, 40, 3)), patch_size=8, gap=3, jitter=1)
    with pytest.raises(ValueError, match="noise_scale"):
        P.drop_color_channels(key, img, noise_scale=-1.0)
    perms = jnp.asarray(maximal_hamming_permutations(4))
    with pytest.raises(ValueError, match="tile_size"):
        P.jigsaw_puzzle(key, img, perms, cell_size=8, tile_size=9)
    with pytest.raises(ValueError, match="needs 34 px"):
        P.jigsaw_puzzle(key, img, perms, cell_size=10, tile_size=9, channel_shift=2)
    with pytest.raises(ValueError, match=r"\[N, 9\]"):
        P.jigsaw_puzzle(key, img, perms[:, :4], cell_size=10, tile_size=9)
    with pytest.raises(ValueError, match="channel_shift"):
        P.jigsaw_puzzle(key, img, perms, cell_size=10, tile_size=9, channel_shift=-1)
    with pytest.raises(ValueError, match="needs 35 px"):
        P.jigsaw_puzzle(key, img, perms, tile_size=9, gap=3, jitter=1)
    with pytest.raises(ValueError, match="exactly one of cell_size"):
        P.jigsaw_puzzle(key, img, perms, cell_size=10, tile_size=9, gap=0)
    with pytest.raises(ValueError, match="exactly one of cell_size"):
        P.jigsaw_puzzle(key, img, perms, tile_size=9)
    with pytest.raises(ValueError, match="jitter applies to spaced tiles"):
        P.jigsaw_puzzle(key, img, perms, cell_size=10, tile_size=9, jitter=1)
    with pytest.raises(ValueError, match="gap"):
        P.spaced_grid_size(tile_size=4, gap=-1)
    with pytest.raises(ValueError, match="jitter"):
        P.spaced_grid_size(tile_size=4, gap=1, jitter=-1)
    with pytest.raises(ValueError, match="mode"):
        P.standardize_tiles(img, mode="image")
    with pytest.raises(ValueError, match="grid"):
        P.jigsaw_grid_size(cell_size=4, tile_size=4, grid=1)
    with pytest.raises(ValueError, match="exceeds"):
        maximal_hamming_permutations(math.factorial(4) + 1, num_tiles=4)
    with pytest.raises(ValueError, match="num_tiles"):
        maximal_hamming_permutations(3, num_tiles=11)
    with pytest.raises(ValueError, match="criterion"):
        maximal_hamming_permutations(3, criterion="max")
    with pytest.raises(ValueError, match="n must"):
        maximal_hamming_permutations(0)
