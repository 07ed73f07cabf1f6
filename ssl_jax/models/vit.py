"""Vision Transformer (Dosovitskiy et al. 2021) with fixed 2-D sin-cos position embeddings.

Supports the token manipulations masked-image methods need: ``keep_idx`` (MAE: the encoder
sees only the visible patches) and ``token_mask`` (iBOT/SimMIM: masked patches replaced by a
learned mask token). Sin-cos embeddings are computed for any grid, so global and local crops
of different sizes share one model.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def sincos_pos_embed(grid_h: int, grid_w: int, dim: int) -> np.ndarray:
    """MAE's fixed 2-D sin-cos embedding ``[grid_h * grid_w, dim]`` (dim divisible by 4)."""
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    ys, xs = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")

    def emb(pos):
        out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([emb(ys), emb(xs)], axis=1).astype(np.float32)


class MlpBlock(nn.Module):
    hidden: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = x.shape[-1]
        x = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype)(x), approximate=False)
        return nn.Dense(out, dtype=self.dtype)(x)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)); x + MLP(LN(x))."""

    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype)(y, y)
        x = x + y
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        return x + MlpBlock(int(x.shape[-1] * self.mlp_ratio), dtype=self.dtype)(y)


class ViT(nn.Module):
    """ViT encoder returning the final-LayerNorm cls feature ``[B, hidden_size]``.

    Attributes:
      patch_size: side of the square patches.
      hidden_size, depth, num_heads, mlp_ratio: transformer shape.
      dtype: compute dtype; parameters stay float32.

    References:
      Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021;
      He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022.
    """

    patch_size: int = 16
    hidden_size: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @property
    def num_features(self) -> int:
        return self.hidden_size

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool,
        keep_idx: jax.Array | None = None,
        token_mask: jax.Array | None = None,
        return_tokens: bool = False,
    ):
        del train  # no dropout / BN: train and eval behave the same
        b, h, w, _ = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {(h, w)} is not a multiple of patch_size {p}")
        x = nn.Conv(self.hidden_size, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype,
                    name="patch_embed")(x.astype(self.dtype))
        gh, gw = h // p, w // p
        x = x.reshape(b, gh * gw, self.hidden_size)
        if token_mask is not None:
            mask_token = self.param("mask_token", nn.initializers.normal(0.02),
                                    (1, 1, self.hidden_size))
            x = jnp.where(token_mask[..., None], mask_token.astype(x.dtype), x)
        x = x + jnp.asarray(sincos_pos_embed(gh, gw, self.hidden_size), x.dtype)[None]
        if keep_idx is not None:
            x = jnp.take_along_axis(x, keep_idx[..., None], axis=1)
        cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, self.hidden_size))
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, self.hidden_size)), x],
                            axis=1)
        for i in range(self.depth):
            x = EncoderBlock(self.num_heads, self.mlp_ratio, dtype=self.dtype,
                             name=f"block{i}")(x)
        x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)
        if return_tokens:
            return x[:, 0], x[:, 1:]
        return x[:, 0]


def vit_tiny(patch_size: int = 16, **kw) -> ViT:
    return ViT(patch_size=patch_size, hidden_size=192, depth=12, num_heads=3, **kw)


def vit_small(patch_size: int = 16, **kw) -> ViT:
    return ViT(patch_size=patch_size, hidden_size=384, depth=12, num_heads=6, **kw)


def vit_base(patch_size: int = 16, **kw) -> ViT:
    return ViT(patch_size=patch_size, hidden_size=768, depth=12, num_heads=12, **kw)
