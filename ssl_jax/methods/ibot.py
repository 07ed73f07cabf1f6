"""iBOT (Zhou et al. 2022): DINO's [CLS] self-distillation plus masked patch-token
distillation from an online (EMA) tokenizer, on a ViT."""

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, bn_vars, concat_views
from ssl_jax.methods.common import (
    MomentumTargetMethod,
    apply_train,
    init_net,
    per_example_keys,
    resolution_groups,
    split_views,
)
from ssl_jax.methods.dino import teacher_temperature
from ssl_jax.models.block_mask import block_mask
from ssl_jax.train.optim import zero_grads_for


def _is_last_layer(path: tuple[str, ...], _) -> bool:
    return "last_layer" in path


class IBOTNet(nn.Module):
    """ViT backbone + iBOT head on the [CLS] token and on every patch token.

    Attributes:
      encoder: a ``ViT`` built with ``use_mask_token=True``.
      head: a ``DINOHead``; with ``patch_head=None`` it is shared by [CLS] and patch tokens
        (iBOT's ``shared_head``, its ViT-S/B setting) and runs once on all those rows.
      patch_head: a separate head for the patch tokens, or None.
    """

    encoder: nn.Module
    head: nn.Module
    patch_head: nn.Module | None = None

    def __call__(
        self,
        global_views: Sequence[jax.Array],
        token_masks: jax.Array | None = None,
        local_views: Sequence[jax.Array] = (),
        *,
        train: bool,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Forward of the global crops (masked where ``token_masks``) and the local crops.

        Args:
          global_views: ``G`` batches ``[B, H, W, C]`` of equal size.
          token_masks: bool ``[G * B, N]`` (rows in view order), or None for no masking.
          local_views: ``L`` smaller batches (their [CLS] token only, never masked).
          train: BatchNorm mode of the head(s), if any.

        Returns:
          ``(h [G*B, D]`` backbone [CLS] features of the global crops,
          ``cls_out [(G+L)*B, K]``, ``patch_out [G*B, N, K']``), rows in view order.
        """
        h, tokens = self.encoder(
            concat_views(global_views), train=train, token_mask=token_masks, return_tokens=True
        )
        rows, n, d = tokens.shape
        cls = [h]
        if local_views:
            local_views = list(local_views)
            for group in resolution_groups(local_views):
                x = concat_views([local_views[i] for i in group])
                cls.append(self.encoder(x, train=train))
        cls = jnp.concatenate(cls, axis=0)
        patches = tokens.reshape(rows * n, d)
        if self.patch_head is None:
            out = self.head(jnp.concatenate([cls, patches], axis=0), train=train)
            cls_out, patch_out = out[: cls.shape[0]], out[cls.shape[0] :]
        else:
            cls_out = self.head(cls, train=train)
            patch_out = self.patch_head(patches, train=train)
        return h, cls_out, patch_out.reshape(rows, n, -1)

    def features(self, x: jax.Array) -> jax.Array:
        """[CLS] feature of the unmasked image: the representation used downstream."""
        return self.encoder(x, train=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class IBOT(MomentumTargetMethod):
    """iBOT: self-distillation of the [CLS] token across views and of masked patch tokens.

    The teacher is the EMA of the whole student (cosine momentum ``ema_base -> ema_final``)
    and sees the ``num_global_crops`` global crops unmasked; the student sees them with
    block-wise masks (each crop of each image is masked with probability ``mask_prob``, then
    at a ratio drawn from ``U(mask_ratio_range)``, 0 otherwise: iBOT's ``pred_ratio 0 0.3,
    pred_ratio_var 0 0.2``), plus the local crops unmasked. The loss is
    ``lambda_cls * dino_loss([CLS] of every student crop vs the teacher's of the other
    global crops) + lambda_patch * ibot_patch_loss(student patch tokens vs the teacher's
    tokens of the same crop, at masked patches)``; teacher [CLS] and patch outputs are
    centred with their own centres, ``aux['center']`` and ``aux['patch_center']`` (EMA of
    the teacher's mean [CLS] output and mean patch output, momentum 0.9 each), and sharpened
    with their own temperatures, both warmed up linearly as DINO's.

    Logged: ``ibot_cls``, ``ibot_patch``, ``mask_ratio`` (masked fraction of the global
    crops' patches), ``teacher_entropy`` ([CLS] targets) and both temperatures. The collapse
    monitors and the online probe get the student's backbone [CLS] features of the (masked)
    global crops, as DINO's; :meth:`encode` the unmasked [CLS] feature.

    Not reproduced: stochastic depth, the weight-decay schedule, the ``pred_start_epoch``
    delay (masking from step 0, the paper's default) and the per-parameter gradient clipping.

    References:
      Zhou, Wei, Wang, Shen, Xie, Yuille & Kong, "iBOT: Image BERT Pre-Training with Online
      Tokenizer", ICLR 2022 (Eq. 1-2, Alg. 1; bytedance/ibot ``main_ibot.py``, ``iBOTLoss``).
    """

    net: IBOTNet
    patch_size: int
    num_global_crops: int = 2
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    teacher_patch_temp: float = 0.07
    warmup_teacher_patch_temp: float = 0.04
    warmup_teacher_temp_steps: int = 0
    center_momentum: float = 0.9
    patch_center_momentum: float = 0.9
    lambda_cls: float = 1.0
    lambda_patch: float = 1.0
    mask_prob: float = 0.5
    mask_ratio_range: tuple[float, float] = (0.1, 0.5)
    freeze_last_layer_steps: int = 0
    target_exclude: tuple[str, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        if self.num_global_crops < 2:
            raise ValueError(f"num_global_crops must be >= 2, got {self.num_global_crops}")
        if not getattr(self.net.encoder, "use_mask_token", True):
            raise ValueError("iBOT needs a ViT built with use_mask_token=True")
        enc_patch = getattr(self.net.encoder, "patch_size", self.patch_size)
        if enc_patch != self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} != encoder patch {enc_patch}")
        if not 0.0 <= self.mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in [0, 1], got {self.mask_prob}")
        lo, hi = self.mask_ratio_range
        if not 0.0 <= lo <= hi < 1.0:
            raise ValueError(f"mask_ratio_range must satisfy 0 <= lo <= hi < 1, got {(lo, hi)}")
        if self.lambda_cls < 0 or self.lambda_patch < 0:
            raise ValueError("lambda_cls and lambda_patch must be >= 0")
        if self.freeze_last_layer_steps < 0:
            raise ValueError("freeze_last_layer_steps must be >= 0")
        self.temperature(0)

    def temperature(self, step: jax.Array) -> jax.Array:
        """Teacher temperature of the [CLS] targets."""
        return teacher_temperature(
            step,
            warmup=self.warmup_teacher_temp,
            final=self.teacher_temp,
            warmup_steps=self.warmup_teacher_temp_steps,
        )

    def patch_temperature(self, step: jax.Array) -> jax.Array:
        """Teacher temperature of the patch targets (same warm-up length)."""
        return teacher_temperature(
            step,
            warmup=self.warmup_teacher_patch_temp,
            final=self.teacher_patch_temp,
            warmup_steps=self.warmup_teacher_temp_steps,
        )

    def masks(
        self, rng: jax.Array, global_views: Sequence[jax.Array], axis_name: str | None = None
    ) -> jax.Array:
        """bool ``[G * B, N]`` block masks of the global crops (rows in view order)."""
        h, w = global_views[0].shape[1:3]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"view size {(h, w)} is not a multiple of patch {self.patch_size}")
        grid = (h // self.patch_size, w // self.patch_size)
        n = grid[0] * grid[1]
        lo, hi = self.mask_ratio_range

        def one(key):
            k_use, k_ratio, k_mask = jax.random.split(key, 3)
            use = jax.random.uniform(k_use) < self.mask_prob
            ratio = jax.random.uniform(k_ratio, minval=lo, maxval=hi)
            return block_mask(k_mask, grid, jnp.where(use, ratio * n, 0.0)).reshape(n)

        rows = []
        for v, x in enumerate(global_views):
            keys = per_example_keys(jax.random.fold_in(rng, v), x.shape[0], axis_name)
            rows.append(jax.vmap(one)(keys))
        return jnp.concatenate(rows, axis=0)

    def init(self, rng, images):
        views = self.views(jax.random.split(rng, images.shape[0]), images)
        g = self.num_global_crops
        masks = self.masks(rng, views[:g])
        globals_, locals_ = list(views[:g]), list(views[g:])
        params, stats = init_net(self.net, rng, globals_, token_masks=masks, local_views=locals_)
        _, cls_out, patch_out = jax.eval_shape(
            lambda *a: self.net.apply(bn_vars(params, stats), *a, train=False),
            globals_,
            masks,
            locals_,
        )
        aux = {
            **self.init_target(params, stats),
            "center": jnp.zeros(cls_out.shape[-1], jnp.float32),
            "patch_center": jnp.zeros(patch_out.shape[-1], jnp.float32),
        }
        return {"params": params, "batch_stats": stats, "aux": aux}

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n, g = views[0].shape[0], self.num_global_crops
        if len(views) < g:
            raise ValueError(f"iBOT needs at least {g} views (the global crops), got {len(views)}")
        globals_, locals_ = list(views[:g]), list(views[g:])
        masks = self.masks(rng, globals_, axis_name)
        (h, s_cls, s_patch), stats = apply_train(
            self.net, params, batch_stats, globals_, masks, locals_
        )
        (_, t_cls, t_patch), t_stats = apply_train(
            self.net, aux["target_params"], aux["target_batch_stats"], globals_
        )
        # stop_gradient: the teacher is an EMA of the student, never trained by gradients.
        t_cls, t_patch = jax.lax.stop_gradient((t_cls, t_patch))
        temp, patch_temp = self.temperature(step), self.patch_temperature(step)
        t_cls_views = split_views(t_cls, g)
        t_patch_views = split_views(t_patch, g)
        cls_loss = losses.dino_loss(
            split_views(s_cls, len(views)),
            t_cls_views,
            aux["center"],
            student_temp=self.student_temp,
            teacher_temp=temp,
            axis_name=axis_name,
        )
        patch_loss = losses.ibot_patch_loss(
            split_views(s_patch, g),
            t_patch_views,
            split_views(masks, g),
            aux["patch_center"],
            student_temp=self.student_temp,
            teacher_temp=patch_temp,
            axis_name=axis_name,
        )
        loss = self.lambda_cls * cls_loss + self.lambda_patch * patch_loss
        center = losses.dino_center_update(
            aux["center"], t_cls_views, momentum=self.center_momentum, axis_name=axis_name
        )
        # The patch centre is the EMA of the mean over every patch of every global crop
        # (iBOT's ``teacher_patch.mean(1)`` then the batch mean; equal N per image).
        patch_center = losses.dino_center_update(
            aux["patch_center"],
            t_patch.reshape(-1, t_patch.shape[-1]),
            momentum=self.patch_center_momentum,
            axis_name=axis_name,
        )
        probs = jax.nn.softmax((t_cls.astype(jnp.float32) - aux["center"]) / temp, axis=-1)
        entropy = -jnp.mean(jnp.sum(probs * jnp.log(jnp.maximum(probs, 1e-30)), axis=-1))
        out = LossOutput(
            batch_stats=stats,
            aux=dict(aux, target_batch_stats=t_stats, center=center, patch_center=patch_center),
            metrics={
                "ibot_cls": cls_loss,
                "ibot_patch": patch_loss,
                "mask_ratio": jnp.mean(masks.astype(jnp.float32)),
                "teacher_entropy": entropy,
            },
            embeddings=(h[:n], h[n : 2 * n]),
            features=h[:n],
        )
        return loss, out

    def grad_mask(self, grads, step):
        if not self.freeze_last_layer_steps:
            return grads
        return zero_grads_for(grads, _is_last_layer, active=step < self.freeze_last_layer_steps)

    def step_metrics(self, aux, step):
        return {
            **super().step_metrics(aux, step),
            "teacher_temp": self.temperature(step),
            "teacher_patch_temp": self.patch_temperature(step),
        }

    def encode(self, params, batch_stats, images):
        return self.net.apply(bn_vars(params, batch_stats), images, method=IBOTNet.features)
