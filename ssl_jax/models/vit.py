"""Vision Transformer encoder (pre-norm, cls token, 2-D sin-cos position embeddings).

Supports the token manipulations masked-image methods need: ``keep_idx`` (MAE: the encoder
sees only the visible patches) and ``token_mask`` (iBOT / SimMIM: masked patch embeddings are
replaced by a learned mask token). The fixed sin-cos embedding is built for whatever patch
grid the input has, so DINO's 96px local and 224px global crops share one model.

Parameter layout follows timm / MAE: one fused ``qkv`` projection per block, so counts match
``timm`` models exactly (ViT-S/16: 21,665,664 with learned position embeddings, 75,648 fewer
with the default fixed sin-cos ones).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

POS_EMBEDS = ("sincos", "learned")
POOLS = ("cls", "mean")

# MAE initialisation: xavier-uniform linear layers (qkv treated as one [D, 3D] matrix).
dense_init = nn.initializers.xavier_uniform()
# The patch embedding is a linear map of the flattened p*p*C patch.
patch_init = nn.initializers.xavier_uniform(in_axis=(0, 1, 2), out_axis=3)
token_init = nn.initializers.normal(0.02)


def sincos_pos_embed(grid_h: int, grid_w: int, dim: int) -> np.ndarray:
    """MAE's fixed 2-D sin-cos position embedding for a ``grid_h x grid_w`` patch grid.

    The first ``dim / 2`` channels encode the column (x) index, the last ``dim / 2`` the row
    (y) index, each as ``[sin(pos * w_k), cos(pos * w_k)]`` with ``w_k = 10000^(-4k / dim)``,
    ``k < dim / 4``; rows are the patches in row-major order. This is MAE's
    ``get_2d_sincos_pos_embed`` layout, so pretrained MAE weights line up.

    Args:
      grid_h: patch rows.
      grid_w: patch columns.
      dim: embedding width, divisible by 4.

    Returns:
      float32 array ``[grid_h * grid_w, dim]``.

    References:
      Vaswani et al., "Attention Is All You Need", 2017; He et al., "Masked Autoencoders
      Are Scalable Vision Learners", CVPR 2022.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")

    def embed_1d(pos: np.ndarray) -> np.ndarray:
        angles = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([embed_1d(cols), embed_1d(rows)], axis=1).astype(np.float32)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection.

    Attributes:
      num_heads: attention heads; must divide the token width.
      dtype: compute dtype.
    """

    num_heads: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, d = x.shape
        if d % self.num_heads:
            raise ValueError(f"width {d} is not divisible by num_heads {self.num_heads}")
        qkv = nn.Dense(3 * d, dtype=self.dtype, kernel_init=dense_init, name="qkv")(x)
        q, k, v = jnp.moveaxis(qkv.reshape(b, t, 3, self.num_heads, d // self.num_heads), 2, 0)
        y = jax.nn.dot_product_attention(q, k, v)
        return nn.Dense(d, dtype=self.dtype, kernel_init=dense_init, name="proj")(
            y.reshape(b, t, d)
        )


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))`` (exact GELU).

    Attributes:
      num_heads: attention heads.
      mlp_ratio: MLP hidden width as a multiple of the token width.
      dtype: compute dtype.
    """

    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm1")(x)
        x = x + Attention(self.num_heads, dtype=self.dtype, name="attn")(y)
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm2")(x)
        hidden = int(d * self.mlp_ratio)
        y = nn.Dense(hidden, dtype=self.dtype, kernel_init=dense_init, name="fc1")(y)
        y = nn.gelu(y, approximate=False)
        return x + nn.Dense(d, dtype=self.dtype, kernel_init=dense_init, name="fc2")(y)


class ViT(nn.Module):
    """ViT encoder returning a final-LayerNorm image feature ``[B, hidden_size]``.

    Attributes:
      patch_size: side of the square patches; image sides must be multiples of it.
      hidden_size: token width D.
      depth: number of transformer blocks.
      num_heads: attention heads.
      mlp_ratio: MLP width as a multiple of D.
      pos_embed: ``'sincos'`` (fixed, no parameters, any grid) or ``'learned'`` (a
        ``[1, 1 + N, D]`` parameter for the init grid, cls position included as in timm;
        other grids get it resized from the square init grid with ``jax.image.resize``
        bicubic, like DINO's interpolation, whose torch kernel differs slightly).
      use_mask_token: create the learned mask token that ``token_mask`` needs (iBOT, SimMIM).
      pool: the image feature: ``'cls'`` (the cls token, as ViT, DINO and MAE's linear
        probe) or ``'mean'`` (the average of the patch tokens the encoder saw, as BEiT's
        linear probe and MAE's ``global_pool``; the cls token still attends).
      dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters stay float32.

    References:
      Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021;
      He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022;
      Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022.
    """

    patch_size: int = 16
    hidden_size: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    pos_embed: str = "sincos"
    use_mask_token: bool = False
    pool: str = "cls"
    dtype: Any = jnp.float32

    @property
    def num_features(self) -> int:
        """Output feature width, known without initialising the module."""
        return self.hidden_size

    def _check_inputs(
        self, x: jax.Array, keep_idx: jax.Array | None, token_mask: jax.Array | None
    ) -> tuple[int, int]:
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"pos_embed must be one of {POS_EMBEDS}, got {self.pos_embed!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if x.ndim != 4:
            raise ValueError(f"ViT expects NHWC images [B, H, W, C], got shape {x.shape}")
        b, h, w, _ = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {(h, w)} is not a multiple of patch_size {p}")
        n = (h // p) * (w // p)
        if keep_idx is not None:
            if keep_idx.ndim != 2 or keep_idx.shape[0] != b or keep_idx.shape[1] > n:
                raise ValueError(f"keep_idx must be [B={b}, N_keep<={n}], got {keep_idx.shape}")
            if not jnp.issubdtype(keep_idx.dtype, jnp.integer):
                raise ValueError(f"keep_idx must hold integers, got {keep_idx.dtype}")
        if token_mask is not None:
            if token_mask.shape != (b, n):
                raise ValueError(f"token_mask must be [B, N]={(b, n)}, got {token_mask.shape}")
            if token_mask.dtype != jnp.bool_:
                raise ValueError(f"token_mask must be bool, got {token_mask.dtype}")
            if not self.use_mask_token:
                raise ValueError("token_mask needs a ViT built with use_mask_token=True")
        return h // p, w // p

    def _patch_pos_embed(self, gh: int, gw: int) -> tuple[jax.Array, jax.Array]:
        """Position embeddings ``([N, D] patches, [1, D] cls)`` for a ``gh x gw`` grid."""
        d = self.hidden_size
        if self.pos_embed == "sincos":
            return jnp.asarray(sincos_pos_embed(gh, gw, d)), jnp.zeros((1, d), jnp.float32)
        if self.has_variable("params", "pos_embed"):
            # Read without self.param's shape check: the table may be for another grid.
            table = self.get_variable("params", "pos_embed")[0]
        else:
            table = self.param("pos_embed", token_init, (1, 1 + gh * gw, d))[0]
        cls_pos, patch_pos = table[:1], table[1:]
        if patch_pos.shape[0] != gh * gw:
            side = round(patch_pos.shape[0] ** 0.5)
            if side * side != patch_pos.shape[0]:
                raise ValueError("a learned pos-embed can only be resized from a square grid")
            grid = patch_pos.reshape(side, side, d)
            patch_pos = jax.image.resize(grid, (gh, gw, d), "bicubic").reshape(gh * gw, d)
        return patch_pos, cls_pos

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool,
        keep_idx: jax.Array | None = None,
        token_mask: jax.Array | None = None,
        return_tokens: bool = False,
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Encodes a batch of images.

        Args:
          x: normalised images ``[B, H, W, C]``, H and W multiples of ``patch_size``.
          train: unused (no dropout or BatchNorm); kept for the common encoder interface.
          keep_idx: ``[B, N_keep]`` int indices of the patches the encoder sees (MAE); position
            embeddings are added before the selection, so each token keeps its position.
          token_mask: ``[B, N]`` bool, True where the patch embedding is replaced by the mask
            token before position embeddings are added (iBOT / SimMIM).
          return_tokens: also return the patch tokens.

        Returns:
          The image feature ``[B, D]`` (``pool``: the final-LayerNorm cls token or the mean
          of the final-LayerNorm patch tokens), or ``(feature [B, D], patch_tokens
          [B, N', D])`` with ``N' = N_keep`` if ``keep_idx`` is given, else
          ``N = (H / p) * (W / p)``.
        """
        del train
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        gh, gw = self._check_inputs(x, keep_idx, token_mask)
        b, d, p = x.shape[0], self.hidden_size, self.patch_size
        tokens = nn.Conv(
            d,
            (p, p),
            strides=(p, p),
            padding="VALID",
            dtype=self.dtype,
            kernel_init=patch_init,
            name="patch_embed",
        )(x.astype(self.dtype)).reshape(b, gh * gw, d)
        if self.use_mask_token:
            mask_token = self.param("mask_token", token_init, (1, 1, d))
            if token_mask is not None:
                tokens = jnp.where(token_mask[..., None], mask_token.astype(self.dtype), tokens)
        patch_pos, cls_pos = self._patch_pos_embed(gh, gw)
        tokens = tokens + patch_pos.astype(self.dtype)
        if keep_idx is not None:
            tokens = jnp.take_along_axis(tokens, keep_idx[..., None], axis=1)
        cls = self.param("cls_token", token_init, (1, 1, d)) + cls_pos
        cls = jnp.broadcast_to(cls.astype(self.dtype), (b, 1, d))
        tokens = jnp.concatenate([cls, tokens], axis=1)
        for i in range(self.depth):
            tokens = TransformerBlock(
                self.num_heads, self.mlp_ratio, dtype=self.dtype, name=f"block{i}"
            )(tokens)
        tokens = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(tokens)
        feature = tokens[:, 0] if self.pool == "cls" else jnp.mean(tokens[:, 1:], axis=1)
        return (feature, tokens[:, 1:]) if return_tokens else feature


def vit_tiny(patch_size: int = 16, **kw: Any) -> ViT:
    """ViT-Ti: D=192, 12 blocks, 3 heads (5.52M parameters at /16 with learned pos-embed).

    Args:
      patch_size: side of the square patches in pixels.
      **kw: other ``ViT`` fields (``dtype``, ``depth``, ``use_mask_token`` ...).

    Returns:
      The (unbound) ``ViT`` module.
    """
    return ViT(patch_size=patch_size, hidden_size=192, depth=12, num_heads=3, **kw)


def vit_small(patch_size: int = 16, **kw: Any) -> ViT:
    """ViT-S: D=384, 12 blocks, 6 heads (21.67M parameters at /16 with learned pos-embed).

    Args:
      patch_size: side of the square patches in pixels.
      **kw: other ``ViT`` fields (``dtype``, ``depth``, ``use_mask_token`` ...).

    Returns:
      The (unbound) ``ViT`` module.
    """
    return ViT(patch_size=patch_size, hidden_size=384, depth=12, num_heads=6, **kw)


def vit_base(patch_size: int = 16, **kw: Any) -> ViT:
    """ViT-B: D=768, 12 blocks, 12 heads (85.80M parameters at /16 with learned pos-embed).

    Args:
      patch_size: side of the square patches in pixels.
      **kw: other ``ViT`` fields (``dtype``, ``depth``, ``use_mask_token`` ...).

    Returns:
      The (unbound) ``ViT`` module.
    """
    return ViT(patch_size=patch_size, hidden_size=768, depth=12, num_heads=12, **kw)
