"""ViT: parameter counts (timm), numerics vs numpy, sin-cos layout, keep_idx / token_mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.models import ViT, sincos_pos_embed, vit_base, vit_small, vit_tiny
from tests.models import numpy_ref as ref
from tests.models.common import count_params, jit_init, randomize


def vit_param_count(d, depth, *, patch=16, image=224, mlp_ratio=4, learned_pos=False):
    """Hand count: patch embedding, cls token, (pos-embed), blocks, final LayerNorm."""
    n = (image // patch) ** 2
    hidden = mlp_ratio * d
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d)
    pos = (1 + n) * d if learned_pos else 0
    return patch * patch * 3 * d + d + d + pos + depth * block + 2 * d


# timm vit_{tiny,small,base}_patch16_224 with num_classes=0 (learned pos-embed incl. cls):
# 5,524,416 / 21,665,664 / 85,798,656 parameters.
@pytest.mark.parametrize(
    "ctor, d, timm_count",
    [(vit_tiny, 192, 5_524_416), (vit_small, 384, 21_665_664), (vit_base, 768, 85_798_656)],
)
def test_param_counts(ctor, d, timm_count):
    learned = count_params(ctor(pos_embed="learned"), (1, 224, 224, 3))
    assert learned == timm_count == vit_param_count(d, 12, learned_pos=True)
    sincos = count_params(ctor(), (1, 224, 224, 3))
    assert sincos == vit_param_count(d, 12) == timm_count - 197 * d  # no position parameters
    assert count_params(ctor(use_mask_token=True), (1, 224, 224, 3)) == sincos + d
    assert ctor().num_features == d


def test_sincos_matches_mae_layout():
    for gh, gw, d in ((14, 14, 384), (3, 5, 16), (6, 2, 8)):
        np.testing.assert_allclose(
            sincos_pos_embed(gh, gw, d), ref.mae_sincos_2d(d, gh, gw), rtol=1e-6, atol=1e-6
        )
    emb = sincos_pos_embed(2, 3, 8)
    # First half encodes the column: patches in one column share it, across a row it changes.
    np.testing.assert_array_equal(emb[0, :4], emb[3, :4])
    np.testing.assert_array_equal(emb[0, 4:], emb[1, 4:])
    assert not np.allclose(emb[0, :4], emb[1, :4])
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed(2, 2, 6)


TINY = {"patch_size": 4, "hidden_size": 16, "depth": 2, "num_heads": 2}


@pytest.fixture(scope="module")
def tiny_vit():
    """A tiny ViT (with a mask token) and random float32 weights."""
    model = ViT(**TINY, use_mask_token=True)
    x = jnp.zeros((2, 8, 12, 3))
    params = randomize(jit_init(model, x, train=False), seed=0)["params"]
    return model, params


def _images(seed, shape=(2, 8, 12, 3)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_vit_matches_numpy_forward(tiny_vit):
    model, params = tiny_vit
    x = _images(1)
    cls, tokens = model.apply({"params": params}, x, train=False, return_tokens=True)
    want_cls, want_tokens = ref.vit(
        ref.f64(params), x.astype(np.float64), patch_size=4, num_heads=2
    )
    np.testing.assert_allclose(cls, want_cls, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tokens, want_tokens, rtol=1e-4, atol=1e-4)
    assert tokens.shape == (2, 6, 16)
    eager = model.apply({"params": params}, x, train=True)  # train has no effect on a ViT
    np.testing.assert_allclose(eager, cls, rtol=1e-5, atol=1e-5)


def test_keep_idx_and_token_mask_match_numpy(tiny_vit):
    model, params = tiny_vit
    x = _images(2)
    rng = np.random.default_rng(3)
    keep = np.stack([rng.permutation(6)[:4] for _ in range(2)]).astype(np.int32)
    mask = rng.random((2, 6)) < 0.5
    cls, tokens = model.apply(
        {"params": params},
        x,
        train=False,
        keep_idx=keep,
        token_mask=mask,
        return_tokens=True,
    )
    want_cls, want_tokens = ref.vit(
        ref.f64(params),
        x.astype(np.float64),
        patch_size=4,
        num_heads=2,
        keep_idx=keep,
        token_mask=mask,
    )
    assert tokens.shape == (2, 4, 16)
    np.testing.assert_allclose(cls, want_cls, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tokens, want_tokens, rtol=1e-4, atol=1e-4)


def test_keep_idx_semantics(tiny_vit):
    model, params = tiny_vit
    x = _images(4)
    apply = lambda **kw: model.apply({"params": params}, x, train=False, return_tokens=True, **kw)
    cls, tokens = apply()
    everything = np.tile(np.arange(6, dtype=np.int32), (2, 1))
    cls_all, tokens_all = apply(keep_idx=everything)
    np.testing.assert_allclose(cls_all, cls, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tokens_all, tokens, rtol=1e-6, atol=1e-6)
    # A permutation of all patches permutes the tokens and leaves cls unchanged: positions
    # are attached before the selection, and attention is permutation-equivariant.
    perm = np.stack([np.random.default_rng(i).permutation(6) for i in range(2)]).astype(np.int32)
    cls_perm, tokens_perm = apply(keep_idx=perm)
    np.testing.assert_allclose(cls_perm, cls, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        tokens_perm,
        np.take_along_axis(np.asarray(tokens), perm[..., None], 1),
        rtol=1e-5,
        atol=1e-5,
    )


def test_token_mask_semantics(tiny_vit):
    model, params = tiny_vit
    x = _images(5)
    plain = model.apply({"params": params}, x, train=False)
    none = np.zeros((2, 6), bool)
    np.testing.assert_array_equal(
        model.apply({"params": params}, x, train=False, token_mask=none), plain
    )
    # Masked patches are invisible: changing their pixels does not change the output.
    mask = np.zeros((2, 6), bool)
    mask[:, [1, 4]] = True  # patch 1 = rows 0:4, cols 4:8; patch 4 = rows 4:8, cols 4:8
    y = x.copy()
    y[:, :, 4:8] += 3.0
    a = model.apply({"params": params}, x, train=False, token_mask=mask)
    b = model.apply({"params": params}, y, train=False, token_mask=mask)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert not np.allclose(model.apply({"params": params}, y, train=False), plain)


def test_any_patch_grid_works():
    """Global and local crops of different sizes share one set of parameters."""
    for pos in ("sincos", "learned"):
        model = ViT(**TINY, pos_embed=pos)
        params = jax.eval_shape(
            lambda m=model: m.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), train=False)
        )
        for size in ((8, 8), (16, 16), (12, 20)):
            cls, tokens = jax.eval_shape(
                lambda p, x, m=model: m.apply(p, x, train=False, return_tokens=True),
                params,
                jnp.zeros((2, *size, 3)),
            )
            assert cls.shape == (2, 16)
            assert tokens.shape == (2, (size[0] // 4) * (size[1] // 4), 16)
    # A learned table made for a 4x4 grid, run on a 3x5 grid (bicubic resize of the table).
    model = ViT(**TINY, pos_embed="learned")
    params = jit_init(model, jnp.zeros((1, 16, 16, 3)), train=False)
    assert params["params"]["pos_embed"].shape == (1, 17, 16)
    cls = model.apply(params, jnp.ones((2, 12, 20, 3)), train=False)
    assert cls.shape == (2, 16) and np.all(np.isfinite(cls))


def test_learned_pos_embed_matches_numpy():
    model = ViT(**TINY, pos_embed="learned")
    x = _images(6, (2, 8, 8, 3))
    params = randomize(jit_init(model, x, train=False), seed=7)["params"]
    assert params["pos_embed"].shape == (1, 5, 16)
    cls = model.apply({"params": params}, x, train=False)
    want, _ = ref.vit(ref.f64(params), x.astype(np.float64), patch_size=4, num_heads=2)
    np.testing.assert_allclose(cls, want, rtol=1e-4, atol=1e-4)


def test_bf16_output_and_float32_params(tiny_vit):
    model, params = tiny_vit
    x = _images(8)
    bf16 = model.clone(dtype=jnp.bfloat16)
    cls, tokens = bf16.apply({"params": params}, x, train=False, return_tokens=True)
    assert cls.dtype == tokens.dtype == jnp.bfloat16
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(jit_init(bf16, x, train=False)))
    want = model.apply({"params": params}, x, train=False)
    np.testing.assert_allclose(cls.astype(np.float32), want, rtol=0.1, atol=0.1)


def test_bad_inputs_raise(tiny_vit):
    model, params = tiny_vit
    v = {"params": params}
    with pytest.raises(ValueError, match="multiple of patch_size"):
        model.apply(v, jnp.zeros((1, 10, 8, 3)), train=False)
    with pytest.raises(ValueError, match="keep_idx"):
        model.apply(v, jnp.zeros((1, 8, 8, 3)), train=False, keep_idx=jnp.zeros((1, 5), jnp.int32))
    with pytest.raises(ValueError, match="token_mask"):
        model.apply(v, jnp.zeros((1, 8, 8, 3)), train=False, token_mask=jnp.zeros((1, 3), bool))
    plain = ViT(**TINY)
    pv = jit_init(plain, jnp.zeros((1, 8, 8, 3)), train=False)
    with pytest.raises(ValueError, match="use_mask_token"):
        plain.apply(pv, jnp.zeros((1, 8, 8, 3)), train=False, token_mask=jnp.zeros((1, 4), bool))
    with pytest.raises(ValueError, match="divisible"):
        ViT(**{**TINY, "num_heads": 3}).init(
            jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False
        )


def test_mean_pool_matches_numpy(tiny_vit):
    """``pool='mean'``: the average of the final-LayerNorm patch tokens (the visible ones
    with ``keep_idx``), from the same parameters as the cls-pooled model."""
    model, params = tiny_vit
    pooled = model.clone(pool="mean")
    x = _images(7)
    keep = np.stack([np.random.default_rng(8 + i).permutation(6)[:3] for i in range(2)])
    for kw in ({}, {"keep_idx": keep.astype(np.int32)}):
        _, want = ref.vit(ref.f64(params), x.astype(np.float64), patch_size=4, num_heads=2, **kw)
        feature, tokens = pooled.apply({"params": params}, x, train=False, return_tokens=True, **kw)
        np.testing.assert_allclose(tokens, want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(feature, want.mean(axis=1), rtol=1e-4, atol=1e-4)
        jitted = jax.jit(lambda p, kw=kw: pooled.apply({"params": p}, x, train=False, **kw))
        np.testing.assert_allclose(jitted(params), want.mean(axis=1), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="pool must be one of"):
        model.clone(pool="max").apply({"params": params}, x, train=False)
