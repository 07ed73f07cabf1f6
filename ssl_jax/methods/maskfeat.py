"""MaskFeat (Wei et al. 2022): predict the HOG features of masked patches."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, Method, bn_vars
from ssl_jax.methods.common import apply_train, init_net, per_example_keys
from ssl_jax.models.block_mask import block_mask
from ssl_jax.models.masking import random_masking

MASK_SHAPES = ("block", "random")


class MaskFeatNet(nn.Module):
    """ViT on the image with masked patches replaced by the mask token + a linear head that
    maps every patch token to a HOG vector.

    Attributes:
      encoder: a ``ViT`` built with ``use_mask_token=True``.
      target_dim: HOG values per patch (``(p / cell)^2 * 3 * bins``).
      dtype: compute dtype of the head.
    """

    encoder: nn.Module
    target_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, token_mask: jax.Array, *, train: bool
    ) -> tuple[jax.Array, jax.Array]:
        """Returns ``(cls [B, D], per-patch predictions [B, N, target_dim])``."""
        cls, tokens = self.encoder(x, train=train, token_mask=token_mask, return_tokens=True)
        return cls, nn.Dense(self.target_dim, dtype=self.dtype, name="head")(tokens)

    def features(self, x: jax.Array) -> jax.Array:
        """cls feature of the unmasked image: the representation used downstream."""
        return self.encoder(x, train=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MaskFeat(Method):
    """Masked feature prediction with HOG targets on a ViT.

    Each image of the (single, crop + flip) view gets its own mask of about ``mask_ratio``
    of its patches: BEiT's block-wise masking (the paper's choice for images,
    :func:`ssl_jax.models.block_mask.block_mask`) or uniformly random patches. The encoder
    sees every position, masked patches as the learned mask token; a linear head predicts
    each patch's HOG vector (:func:`ssl_jax.losses.hog_targets` of the unmasked view: Sobel
    gradients, ``num_bins`` unsigned orientation bins per ``cell_size`` cell, the Gaussian
    window of one patch, L2-normalised per ``norm_cells`` block and colour channel, channels
    concatenated) and the loss is the MSE over the masked patches only
    (:func:`ssl_jax.losses.mae_loss` without pixel normalisation). ``aux`` is empty.

    :meth:`encode` returns the final-LayerNorm cls token of the unmasked image. The online
    probe is fed the cls token of the masked training pass (an unmasked pass of the whole
    batch would cost a third more per step), so it under-estimates the frozen-feature probe.
    The collapse monitors pair, for the first quarter of the batch, that masked cls token
    with the unmasked one (a stop-gradient forward pass of a quarter of the batch, ~8% of
    a step): their alignment says how much the representation depends on the mask.

    References:
      Wei, Fan, Xie, Wu, Yuille & Feichtenhofer, "Masked Feature Prediction for
      Self-Supervised Visual Pre-Training", CVPR 2022 (Sec. 3-4; facebookresearch/SlowFast
      ``MaskMViT`` / ``HOGLayerC``).
    """

    net: MaskFeatNet
    patch_size: int
    mask_ratio: float = 0.4
    mask_shape: str = "block"
    cell_size: int = 8
    num_bins: int = 9
    norm_cells: int = 1
    window: int | None = None  # None: one patch (MaskFeat); 0: no Gaussian window

    def __post_init__(self):
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.mask_shape not in MASK_SHAPES:
            raise ValueError(f"mask_shape must be one of {MASK_SHAPES}, got {self.mask_shape!r}")
        enc_patch = getattr(self.net.encoder, "patch_size", self.patch_size)
        if enc_patch != self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} != encoder patch {enc_patch}")
        if not getattr(self.net.encoder, "use_mask_token", True):
            raise ValueError("MaskFeat needs a ViT built with use_mask_token=True")
        if self.patch_size % (self.cell_size * self.norm_cells):
            raise ValueError(
                f"patch_size {self.patch_size} is not a multiple of cell_size * norm_cells = "
                f"{self.cell_size} * {self.norm_cells}"
            )
        if self.net.target_dim != self.target_dim:
            raise ValueError(f"net.target_dim {self.net.target_dim} != HOG size {self.target_dim}")

    @property
    def target_dim(self) -> int:
        """HOG values per patch: cells per patch x 3 colour channels x bins."""
        return (self.patch_size // self.cell_size) ** 2 * 3 * self.num_bins

    def _grid(self, x: jax.Array) -> tuple[int, int]:
        h, w = x.shape[1:3]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"view size {(h, w)} is not a multiple of patch {self.patch_size}")
        return h // self.patch_size, w // self.patch_size

    def masks(self, rng: jax.Array, x: jax.Array, axis_name: str | None = None) -> jax.Array:
        """bool ``[B, N]`` masks (True = masked) for the batch ``x``, one per example."""
        grid = self._grid(x)
        n = grid[0] * grid[1]
        keys = per_example_keys(rng, x.shape[0], axis_name)

        def one(key):
            if self.mask_shape == "block":
                return block_mask(key, grid, self.mask_ratio * n).reshape(n)
            return random_masking(key, 1, n, self.mask_ratio)[1][0] > 0

        return jax.vmap(one)(keys)

    def targets(self, x: jax.Array) -> jax.Array:
        """HOG targets ``[B, N, target_dim]`` of a batch of views."""
        return losses.hog_targets(
            x,
            patch_size=self.patch_size,
            cell_size=self.cell_size,
            num_bins=self.num_bins,
            norm_cells=self.norm_cells,
            window=self.window,
        )

    def init(self, rng, images):
        views = self.views(jax.random.split(rng, images.shape[0]), images)
        mask = self.masks(rng, views[0])
        params, stats = init_net(self.net, rng, views[0], token_mask=mask)
        return {"params": params, "batch_stats": stats, "aux": {}}

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        x = views[0]
        mask = self.masks(rng, x, axis_name)
        (cls, pred), stats = apply_train(self.net, params, batch_stats, x, token_mask=mask)
        # stop_gradient: HOG of the unmasked view is a fixed target (MaskFeat: torch.no_grad).
        target = jax.lax.stop_gradient(self.targets(x))
        loss = losses.mae_loss(pred, target, mask, norm_pix_loss=False, axis_name=axis_name)
        k = min(x.shape[0], max(2, x.shape[0] // 4))  # the monitors need 2 rows
        # stop_gradient: the unmasked pass only feeds the collapse monitors.
        full = jax.lax.stop_gradient(self.encode(params, batch_stats, x[:k]))
        out = LossOutput(
            batch_stats=stats,
            aux=aux,
            metrics={"maskfeat": loss, "mask_ratio": jnp.mean(mask.astype(jnp.float32))},
            embeddings=(cls[:k], full),
            features=cls,
        )
        return loss, out

    def encode(self, params, batch_stats, images):
        return self.net.apply(bn_vars(params, batch_stats), images, method=MaskFeatNet.features)
