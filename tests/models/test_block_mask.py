"""Block-wise masking against a plain-Python replay of BEiT's / iBOT's generator.

The reference is the loop of iBOT's ``ImageFolderMask.__getitem__`` (BEiT's
``MaskingGenerator._mask``) with Python's ``random`` calls replaced by the uniforms that
``attempt_uniforms`` draws for each (round, attempt), so the masks must agree exactly.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.models.block_mask import attempt_uniforms, block_mask, default_min_area


def np_block_mask(key, grid, high, min_area=None, min_aspect=0.3, attempts=10):
    H, W = grid
    low = (min(H, W) // 3) ** 2 if min_area is None else min_area
    log_ratio = (math.log(min_aspect), math.log(1 / min_aspect))
    mask = np.zeros((H, W), dtype=bool)
    mask_count, t = 0, 0
    while mask_count < high:
        max_mask_patches = high - mask_count
        delta = 0
        for attempt in range(attempts):
            u = np.asarray(attempt_uniforms(key, t, attempt, attempts), np.float64)
            target_area = low + (max_mask_patches - low) * u[0]  # random.uniform(low, max)
            aspect_ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
            h = round(math.sqrt(target_area * aspect_ratio))  # half to even
            w = round(math.sqrt(target_area / aspect_ratio))
            if w < W and h < H:
                top = int(u[2] * (H - h + 1))  # random.randint(0, H - h)
                left = int(u[3] * (W - w + 1))
                num_masked = mask[top : top + h, left : left + w].sum()
                if 0 < h * w - num_masked <= max_mask_patches:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if mask[i, j] == 0:
                                mask[i, j] = 1
                                delta += 1
            if delta > 0:
                break
        t += 1
        if delta == 0:
            break
        mask_count += delta
    return mask


@pytest.mark.parametrize(
    ("grid", "ratio", "min_area"),
    [((8, 8), 0.4, None), ((14, 14), 0.4, 16), ((8, 8), 0.23, None), ((6, 10), 0.5, 2),
     ((4, 4), 0.3, None), ((8, 8), 0.0, None)],
)  # fmt: skip
def test_block_mask_replays_the_reference_generator(grid, ratio, min_area):
    n = grid[0] * grid[1]
    keys = jax.random.split(jax.random.key(sum(grid)), 12)
    fn = jax.jit(jax.vmap(lambda k: block_mask(k, grid, ratio * n, min_area=min_area)))
    got = np.asarray(fn(keys))
    for key, mask in zip(keys, got, strict=True):
        want = np_block_mask(key, grid, ratio * n, min_area)
        np.testing.assert_array_equal(mask, want)
        assert mask.sum() <= ratio * n
    # Eager and jit agree with the vmapped masks.
    np.testing.assert_array_equal(block_mask(keys[0], grid, ratio * n, min_area=min_area), got[0])
    if ratio > 0:
        assert len({m.tobytes() for m in got}) > 6  # different keys, different masks


def test_block_mask_reaches_about_the_target_in_blocks():
    keys = jax.random.split(jax.random.key(0), 256)
    masks = np.asarray(jax.jit(jax.vmap(lambda k: block_mask(k, (8, 8), 25.6)))(keys))
    counts = masks.reshape(256, -1).sum(1)
    assert counts.max() <= 25 and counts.mean() > 23.5
    # Blocks, not scattered patches: most masked patches have a masked 4-neighbour.
    pad = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    neighbours = pad[:, :-2, 1:-1] | pad[:, 2:, 1:-1] | pad[:, 1:-1, :-2] | pad[:, 1:-1, 2:]
    assert (neighbours & masks).sum() / masks.sum() > 0.95
    # A traced target (iBOT draws the ratio per image) gives the same mask as a constant.
    traced = jax.jit(lambda k, r: block_mask(k, (8, 8), r * 64))(keys[3], jnp.float32(0.4))
    np.testing.assert_array_equal(traced, masks[3])


def test_block_mask_errors_and_defaults():
    assert default_min_area((14, 14)) == 16 and default_min_area((8, 8)) == 4
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="grid"):
        block_mask(key, (0, 4), 2.0)
    with pytest.raises(ValueError, match="min_aspect"):
        block_mask(key, (4, 4), 2.0, min_aspect=1.5)
    with pytest.raises(ValueError, match="max_attempts"):
        block_mask(key, (4, 4), 2.0, max_attempts=0)
    with pytest.raises(ValueError, match="min_area"):
        block_mask(key, (4, 4), 2.0, min_area=-1)
