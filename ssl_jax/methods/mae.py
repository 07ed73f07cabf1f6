"""MAE (He et al. 2022): reconstruct the pixels of masked patches from the visible ones."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, Method, bn_vars
from ssl_jax.methods.common import apply_train, init_net, per_example_keys
from ssl_jax.models.masking import MAEDecoder, random_masking


class MAENet(nn.Module):
    """ViT encoder on the visible patches + lightweight decoder over all patch positions.

    Attributes:
      encoder: a ``ViT`` (supports ``keep_idx`` and ``return_tokens``).
      decoder: an ``MAEDecoder``.
    """

    encoder: nn.Module
    decoder: MAEDecoder

    def __call__(
        self, x: jax.Array, keep_idx: jax.Array, restore_idx: jax.Array, *, train: bool
    ) -> tuple[jax.Array, jax.Array]:
        """Returns ``(cls [B, D], per-patch predictions [B, N, p*p*C])``."""
        cls, tokens = self.encoder(x, train=train, keep_idx=keep_idx, return_tokens=True)
        tokens = jnp.concatenate([cls[:, None], tokens], axis=1)
        return cls, self.decoder(tokens, restore_idx, train=train)

    def visible_features(self, x: jax.Array, keep_idx: jax.Array) -> jax.Array:
        """cls feature of the encoder on the patches in ``keep_idx`` only."""
        return self.encoder(x, train=False, keep_idx=keep_idx)

    def features(self, x: jax.Array) -> jax.Array:
        """cls feature of the whole (unmasked) image: the representation used downstream."""
        return self.encoder(x, train=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MAE(Method):
    """Masked autoencoder with per-patch normalised pixel targets.

    Each image of the (single, crop + flip) view gets its own uniformly random mask of
    ``mask_ratio`` of its patches (drawn from a per-example key, so ``jit`` and ``pmap``
    draw the same masks); the encoder sees the visible patches only, the decoder predicts
    every patch, and :func:`ssl_jax.losses.mae_loss` averages the per-patch MSE over the
    masked patches, with ``norm_pix_loss`` targets. Targets are patches of the normalised
    view (per-channel normalisation is affine per patch, so with ``norm_pix_loss`` it does
    not change the target). ``aux`` is empty.

    :meth:`encode` returns the final-LayerNorm cls token of the UNMASKED image (MAE's
    linear-probe feature). The online probe is fed the cls token of the masked training
    pass instead (an unmasked pass would cost ~4x the encoder's forward each step), so it
    under-estimates the frozen-feature probe.

    Collapse monitors get the cls features of two passes with independent masks: the
    training pass and a second, stop-gradient, encoder-only pass (about one extra encoder
    forward on 25% of the patches). Their alignment says how much the representation
    depends on which patches are visible.

    Attributes:
      net: the :class:`MAENet` (encoder + decoder).
      patch_size: side of the square patches, as the encoder's.
      mask_ratio: fraction of each image's patches that is masked.
      norm_pix_loss: targets are patches normalised by their own mean and std.

    References:
      He, Chen, Xie, Li, Dollar & Girshick, "Masked Autoencoders Are Scalable Vision
      Learners", CVPR 2022 (Sec. 3; official ``models_mae.py``).
    """

    net: MAENet
    patch_size: int
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True

    def __post_init__(self):
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        enc_patch = getattr(self.net.encoder, "patch_size", self.patch_size)
        if enc_patch != self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} != encoder patch {enc_patch}")

    def _num_patches(self, x: jax.Array) -> int:
        h, w = x.shape[1:3]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"view size {(h, w)} is not a multiple of patch {self.patch_size}")
        return (h // self.patch_size) * (w // self.patch_size)

    def masks(self, rng: jax.Array, x: jax.Array, axis_name: str | None = None):
        """``(keep_idx, mask, restore_idx)`` for the batch ``x``, one mask per example."""
        num_patches = self._num_patches(x)
        keys = per_example_keys(rng, x.shape[0], axis_name)
        keep, mask, restore = jax.vmap(
            lambda k: random_masking(k, 1, num_patches, self.mask_ratio)
        )(keys)
        return keep[:, 0], mask[:, 0], restore[:, 0]

    def init(self, rng, images):
        views = self.views(jax.random.split(rng, images.shape[0]), images)
        keep, _, restore = self.masks(rng, views[0])
        params, stats = init_net(self.net, rng, views[0], keep_idx=keep, restore_idx=restore)
        return {"params": params, "batch_stats": stats, "aux": {}}

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        x = views[0]
        mask_key, monitor_key = jax.random.split(rng)
        keep, mask, restore = self.masks(mask_key, x, axis_name)
        (cls, pred), stats = apply_train(
            self.net, params, batch_stats, x, keep_idx=keep, restore_idx=restore
        )
        target = losses.patchify(x, self.patch_size)
        loss = losses.mae_loss(
            pred, target, mask, norm_pix_loss=self.norm_pix_loss, axis_name=axis_name
        )
        keep2, _, _ = self.masks(monitor_key, x, axis_name)
        # stop_gradient: the second pass only feeds the monitors, never the objective.
        cls2 = jax.lax.stop_gradient(
            self.net.apply(bn_vars(params, batch_stats), x, keep2, method=MAENet.visible_features)
        )
        out = LossOutput(
            batch_stats=stats,
            aux=aux,
            metrics={"mae": loss},
            embeddings=(cls, cls2),
            features=cls,
        )
        return loss, out

    def encode(self, params, batch_stats, images):
        return self.net.apply(bn_vars(params, batch_stats), images, method=MAENet.features)
