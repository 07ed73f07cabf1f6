"""MAE's random patch masking and the lightweight MAE decoder (patchify: ``ssl_jax.losses``)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.models.vit import TransformerBlock, dense_init, sincos_pos_embed, token_init


def num_kept(num_patches: int, mask_ratio: float) -> int:
    """Visible patches per image for a mask ratio: ``int(N * (1 - mask_ratio))`` as in MAE.

    Args:
      num_patches: ``N``, patches per image.
      mask_ratio: fraction of the patches that is masked, in [0, 1).

    Returns:
      The number of visible (kept) patches.
    """
    return int(num_patches * (1 - mask_ratio))


def random_masking(
    rng: jax.Array, batch: int, num_patches: int, mask_ratio: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-image uniformly random patch masking (MAE's argsort-of-noise shuffle).

    Args:
      rng: PRNG key; the same key gives the same masks.
      batch: number of images B.
      num_patches: patches per image N.
      mask_ratio: fraction of patches to mask, in ``[0, 1)``; ``N_keep = int(N * (1 - r))``.

    Returns:
      ``(keep_idx, mask, restore_idx)``: ``keep_idx [B, N_keep]`` int32 indices of the visible
      patches (in shuffled order, feed to ``ViT(keep_idx=...)``); ``mask [B, N]`` float32,
      1 = masked, in the original patch order; ``restore_idx [B, N]`` int32, the inverse
      permutation: ``shuffled[b, restore_idx[b, n]]`` is patch ``n``.

    References:
      He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    if batch < 1 or num_patches < 1:
        raise ValueError(f"batch and num_patches must be positive, got {batch}, {num_patches}")
    n_keep = num_kept(num_patches, mask_ratio)
    if n_keep < 1:
        raise ValueError(f"mask_ratio {mask_ratio} keeps no patch out of {num_patches}")
    noise = jax.random.uniform(rng, (batch, num_patches))
    shuffle_idx = jnp.argsort(noise, axis=1).astype(jnp.int32)
    restore_idx = jnp.argsort(shuffle_idx, axis=1).astype(jnp.int32)
    keep_idx = shuffle_idx[:, :n_keep]
    mask_shuffled = (jnp.arange(num_patches) >= n_keep).astype(jnp.float32)
    mask = jnp.take_along_axis(jnp.broadcast_to(mask_shuffled, noise.shape), restore_idx, axis=1)
    return keep_idx, mask, restore_idx


def unshuffle_tokens(
    visible: jax.Array, mask_token: jax.Array, restore_idx: jax.Array
) -> jax.Array:
    """Puts visible tokens back at their patch positions and fills the rest with a mask token.

    Args:
      visible: ``[B, N_keep, D]`` tokens of the patches in ``keep_idx`` order.
      mask_token: ``[D]`` (or broadcastable to ``[B, 1, D]``) token for masked patches.
      restore_idx: ``[B, N]`` from ``random_masking``.

    Returns:
      ``[B, N, D]`` tokens in the original patch order.
    """
    b, n_keep, d = visible.shape
    n = restore_idx.shape[1]
    if restore_idx.shape[0] != b or n < n_keep:
        raise ValueError(
            f"restore_idx {restore_idx.shape} does not fit visible tokens {visible.shape}"
        )
    fill = jnp.broadcast_to(jnp.asarray(mask_token, visible.dtype), (b, n - n_keep, d))
    shuffled = jnp.concatenate([visible, fill], axis=1)
    return jnp.take_along_axis(shuffled, restore_idx[..., None], axis=1)


class MAEDecoder(nn.Module):
    """MAE decoder: embed visible tokens, insert mask tokens, add sin-cos positions, run
    transformer blocks, predict each patch's pixels.

    Attributes:
      num_patches: patches per image N.
      patch_dim_out: outputs per patch, ``p * p * 3`` for pixel targets.
      decoder_dim: decoder token width (512 in MAE).
      depth: decoder blocks (8 in MAE).
      heads: decoder attention heads (16 in MAE).
      mlp_ratio: MLP width multiple.
      grid_shape: patch grid ``(rows, cols)``; default a square grid of ``num_patches``.
      dtype: compute dtype; parameters stay float32.

    References:
      He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022.
    """

    num_patches: int
    patch_dim_out: int
    decoder_dim: int = 512
    depth: int = 8
    heads: int = 16
    mlp_ratio: float = 4.0
    grid_shape: tuple[int, int] | None = None
    dtype: Any = jnp.float32

    def _grid(self) -> tuple[int, int]:
        if self.grid_shape is not None:
            gh, gw = self.grid_shape
            if gh * gw != self.num_patches:
                raise ValueError(f"grid_shape {self.grid_shape} != num_patches {self.num_patches}")
            return gh, gw
        side = round(self.num_patches**0.5)
        if side * side != self.num_patches:
            raise ValueError(f"num_patches {self.num_patches} is not square; pass grid_shape")
        return side, side

    @nn.compact
    def __call__(self, tokens: jax.Array, restore_idx: jax.Array, *, train: bool) -> jax.Array:
        """Predicts every patch from the encoder's visible tokens.

        Args:
          tokens: ``[B, 1 + N_keep, D_enc]`` encoder output, cls token first, then the visible
            patch tokens in ``keep_idx`` order (``jnp.concatenate([cls[:, None], patches], 1)``
            of ``ViT(..., keep_idx=keep_idx, return_tokens=True)``).
          restore_idx: ``[B, N]`` from ``random_masking``.
          train: unused (no dropout or BatchNorm).

        Returns:
          Per-patch predictions ``[B, N, patch_dim_out]`` in the original patch order.
        """
        del train
        gh, gw = self._grid()
        if tokens.ndim != 3 or restore_idx.shape != (tokens.shape[0], self.num_patches):
            raise ValueError(
                f"expected tokens [B, 1+N_keep, D] and restore_idx [B, {self.num_patches}], "
                f"got {tokens.shape} and {restore_idx.shape}"
            )
        if tokens.shape[1] - 1 > self.num_patches:
            raise ValueError(f"{tokens.shape[1] - 1} visible tokens > {self.num_patches} patches")
        d = self.decoder_dim
        x = nn.Dense(d, dtype=self.dtype, kernel_init=dense_init, name="embed")(
            tokens.astype(self.dtype)
        )
        mask_token = self.param("mask_token", token_init, (d,))
        patches = unshuffle_tokens(x[:, 1:], mask_token.astype(self.dtype), restore_idx)
        patches = patches + jnp.asarray(sincos_pos_embed(gh, gw, d), self.dtype)
        # The cls token's decoder position embedding is zero, as in MAE.
        x = jnp.concatenate([x[:, :1], patches], axis=1)
        for i in range(self.depth):
            x = TransformerBlock(self.heads, self.mlp_ratio, dtype=self.dtype, name=f"block{i}")(x)
        x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)
        x = nn.Dense(self.patch_dim_out, dtype=self.dtype, kernel_init=dense_init, name="pred")(x)
        return x[:, 1:]
