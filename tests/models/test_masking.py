"""MAE masking, patchify and the MAE decoder (numerics vs numpy, unshuffle semantics)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import patchify, unpatchify
from ssl_jax.models import (
    MAEDecoder,
    ViT,
    num_kept,
    random_masking,
    unshuffle_tokens,
)
from tests.models import numpy_ref as ref
from tests.models.common import jit_apply, jit_init, randomize


@pytest.mark.parametrize(
    "batch, n, ratio", [(3, 16, 0.75), (2, 196, 0.75), (4, 10, 0.3), (1, 5, 0.0)]
)
def test_random_masking_properties(batch, n, ratio):
    keep, mask, restore = random_masking(jax.random.key(0), batch, n, ratio)
    n_keep = int(n * (1 - ratio))
    assert n_keep == num_kept(n, ratio)
    assert keep.shape == (batch, n_keep) and keep.dtype == jnp.int32
    assert mask.shape == restore.shape == (batch, n) and mask.dtype == jnp.float32
    keep, mask, restore = map(np.asarray, (keep, mask, restore))
    np.testing.assert_array_equal(mask.sum(1), n - n_keep)  # exactly N_keep visible
    for b in range(batch):
        assert sorted(restore[b]) == list(range(n))  # a permutation
        assert len(set(keep[b])) == n_keep
        np.testing.assert_array_equal(mask[b, keep[b]], 0.0)
        # restore_idx inverts the shuffle: kept patch j sits at shuffled position j.
        np.testing.assert_array_equal(restore[b, keep[b]], np.arange(n_keep))
        np.testing.assert_array_equal(mask[b], (restore[b] >= n_keep).astype(np.float32))


def test_random_masking_determinism_and_uniformity():
    a = random_masking(jax.random.key(1), 4, 16, 0.75)
    b = jax.jit(random_masking, static_argnums=(1, 2, 3))(jax.random.key(1), 4, 16, 0.75)
    c = random_masking(jax.random.key(2), 4, 16, 0.75)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])
    # Each patch is masked with probability ~0.75 over many images; rows differ.
    _, mask, _ = random_masking(jax.random.key(3), 4000, 16, 0.75)
    np.testing.assert_allclose(np.asarray(mask).mean(0), 0.75, atol=0.03)
    assert len({tuple(r) for r in np.asarray(mask[:50])}) > 40


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 0.99])
def test_random_masking_bad_ratio(ratio):
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(jax.random.key(0), 2, 16, ratio)


def test_unshuffle_tokens_restores_patch_order():
    full = jax.random.normal(jax.random.key(0), (3, 12, 5))
    keep, mask, restore = random_masking(jax.random.key(1), 3, 12, 0.5)
    visible = jnp.take_along_axis(full, keep[..., None], axis=1)
    token = jnp.arange(5.0) + 100.0
    out = np.asarray(unshuffle_tokens(visible, token, restore))
    m = np.asarray(mask, bool)
    np.testing.assert_array_equal(out[~m], np.asarray(full)[~m])
    np.testing.assert_array_equal(out[m], np.broadcast_to(token, (m.sum(), 5)))


def test_patchify_matches_loops_and_inverts():
    x = np.random.default_rng(0).normal(size=(2, 8, 12, 3)).astype(np.float32)
    p = patchify(x, 4)
    assert p.shape == (2, 6, 48)
    for r in range(2):
        for c in range(3):
            np.testing.assert_array_equal(
                p[:, r * 3 + c], x[:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].reshape(2, -1)
            )
    np.testing.assert_array_equal(unpatchify(p, 4, grid=(2, 3)), x)
    with pytest.raises(ValueError, match="multiple"):
        patchify(x, 5)
    with pytest.raises(ValueError, match="grid"):
        unpatchify(p, 4, grid=(3, 3))


DEC = {"num_patches": 6, "patch_dim_out": 12, "decoder_dim": 16, "heads": 2, "grid_shape": (2, 3)}


def _decoder_inputs(seed, n_keep=3, width=10):
    keep, mask, restore = random_masking(jax.random.key(seed), 2, 6, 1 - n_keep / 6)
    tokens = jax.random.normal(jax.random.key(seed + 100), (2, 1 + n_keep, width))
    return tokens, keep, mask, restore


def test_mae_decoder_matches_numpy():
    dec = MAEDecoder(**DEC, depth=2)
    tokens, _, _, restore = _decoder_inputs(0)
    params = randomize(jit_init(dec, tokens, restore, train=False), seed=1)["params"]
    out = jit_apply(dec, {"params": params}, tokens, restore, train=True)
    assert out.shape == (2, 6, 12)
    want = ref.mae_decoder(
        ref.f64(params),
        np.asarray(tokens, np.float64),
        np.asarray(restore),
        num_heads=2,
        grid_h=2,
        grid_w=3,
    )
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_mae_decoder_unshuffles_to_patch_positions():
    """With no blocks each output depends only on its own token and position, so the
    prediction at a visible patch equals the one made when every patch is visible."""
    dec = MAEDecoder(**DEC, depth=0)
    full = jax.random.normal(jax.random.key(5), (2, 7, 10))  # cls + 6 patches in order
    identity = jnp.tile(jnp.arange(6, dtype=jnp.int32), (2, 1))
    params = jit_init(dec, full, identity, train=False)
    want = np.asarray(jit_apply(dec, params, full, identity, train=False))
    keep, mask, restore = random_masking(jax.random.key(6), 2, 6, 0.5)
    visible = jnp.concatenate(
        [full[:, :1], jnp.take_along_axis(full[:, 1:], keep[..., None], 1)], 1
    )
    got = np.asarray(jit_apply(dec, params, visible, restore, train=False))
    m = np.asarray(mask, bool)
    np.testing.assert_allclose(got[~m], want[~m], rtol=1e-5, atol=1e-5)
    # Masked patches see only the mask token + their position: equal across images at a
    # given position, different across positions.
    for pos in range(6):
        if m[0, pos] and m[1, pos]:
            np.testing.assert_allclose(got[0, pos], got[1, pos], rtol=1e-5, atol=1e-5)


def test_mae_decoder_invariant_to_visible_order():
    """The same visible set in another order (with its restore_idx) gives the same output."""
    dec = MAEDecoder(**DEC, depth=1)
    tokens, keep, _, restore = _decoder_inputs(7)
    params = jit_init(dec, tokens, restore, train=False)
    out = jit_apply(dec, params, tokens, restore, train=False)
    order = jnp.array([2, 0, 1])
    keep2 = keep[:, order]
    tokens2 = jnp.concatenate([tokens[:, :1], tokens[:, 1:][:, order]], axis=1)
    masked = jnp.argsort(restore, axis=1)[:, 3:]  # shuffle order of the masked patches
    restore2 = jnp.argsort(jnp.concatenate([keep2, masked], axis=1), axis=1)
    out2 = jit_apply(dec, params, tokens2, restore2, train=False)
    np.testing.assert_allclose(out2, out, rtol=1e-5, atol=1e-5)


def test_mae_encoder_decoder_pipeline_and_bf16():
    enc32 = ViT(patch_size=4, hidden_size=16, depth=1, num_heads=2)
    dec32 = MAEDecoder(num_patches=4, patch_dim_out=48, decoder_dim=8, depth=1, heads=2)
    images = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    keep, _, restore = random_masking(jax.random.key(1), 2, 4, 0.5)

    @functools.partial(jax.jit, static_argnames="dtype")
    def forward(ev, dv, dtype):
        enc, dec = enc32.clone(dtype=dtype), dec32.clone(dtype=dtype)
        cls, vis = jit_apply(enc, ev, images, train=True, keep_idx=keep, return_tokens=True)
        return jit_apply(dec, dv, jnp.concatenate([cls[:, None], vis], 1), restore, train=True)

    ev = jit_init(enc32, images, train=False)
    dv = jit_init(dec32, jnp.zeros((2, 3, 16)), restore, train=False)
    pred = forward(ev, dv, dtype=jnp.float32)
    assert pred.shape == patchify(images, 4).shape == (2, 4, 48)
    pred16 = forward(ev, dv, dtype=jnp.bfloat16)
    assert pred16.dtype == jnp.bfloat16
    np.testing.assert_allclose(pred16.astype(np.float32), pred, rtol=0.1, atol=0.1)


def test_mae_decoder_bad_inputs():
    with pytest.raises(ValueError, match="not square"):
        MAEDecoder(num_patches=6, patch_dim_out=4, decoder_dim=8, depth=0, heads=2).init(
            jax.random.key(0), jnp.zeros((1, 3, 8)), jnp.zeros((1, 6), jnp.int32), train=False
        )
    with pytest.raises(ValueError, match="restore_idx"):
        MAEDecoder(**DEC, depth=0).init(
            jax.random.key(0), jnp.zeros((1, 3, 8)), jnp.zeros((1, 5), jnp.int32), train=False
        )
