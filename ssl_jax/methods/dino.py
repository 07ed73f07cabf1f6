"""DINO (Caron et al. 2021): self-distillation from an EMA teacher with centring and
sharpening, over multi-crop views."""

import dataclasses

import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, bn_vars, concat_views
from ssl_jax.methods.common import (
    MomentumTargetMethod,
    apply_train,
    init_net,
    multi_crop_forward,
    split_views,
)
from ssl_jax.train.optim import zero_grads_for


def _is_last_layer(path: tuple[str, ...], _) -> bool:
    return "last_layer" in path


def teacher_temperature(
    step: int | jax.Array, *, warmup: float, final: float, warmup_steps: int
) -> jax.Array:
    """DINO's teacher temperature: linear from ``warmup`` at step 0 to ``final`` at step
    ``warmup_steps``, constant after (``final`` throughout if ``warmup_steps == 0``).

    Args:
      step: optimiser step (int or traced scalar).
      warmup: temperature at step 0 (0.04).
      final: temperature after the warm-up (0.04-0.07).
      warmup_steps: warm-up length in steps (DINO: 30 epochs), >= 0.

    Returns:
      float32 scalar.

    References:
      Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021
      (Sec. 3.1 / App.; ``DINOLoss.teacher_temp_schedule``, which steps per epoch).
    """
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if warmup_steps == 0:
        return jnp.asarray(final, jnp.float32)
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / warmup_steps, 0.0, 1.0)
    return (warmup + (final - warmup) * frac).astype(jnp.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DINO(MomentumTargetMethod):
    """DINO: the student predicts the centred, sharpened teacher distribution of other crops.

    ``net`` (the student) is backbone + ``DINOHead`` as its projector; the teacher is the
    same network with EMA parameters (cosine momentum ``ema_base -> ema_final``, 0.996 -> 1
    in the paper) and its own BatchNorm statistics (train mode, as in the official code).
    The teacher sees only the first ``num_global_crops`` views; the student sees every view
    (global crops, then local crops, one backbone pass per resolution). ``aux`` holds
    ``{'target_params', 'target_batch_stats', 'center'}``; the center ``[K]`` is updated
    after the loss with :func:`ssl_jax.losses.dino_center_update` (momentum 0.9) from the
    teacher outputs of this batch.

    The teacher temperature warms up linearly (:func:`teacher_temperature`) and is logged
    as ``teacher_temp`` with the EMA momentum. The gradients of the head's last layer are
    zeroed for the first ``freeze_last_layer_steps`` steps (DINO: 1 epoch). Also logged:
    ``teacher_entropy``, the mean entropy of the teacher's target distribution (it goes to
    ``log K`` on uniform collapse and to 0 on one-hot collapse; Fig. 7 of the paper).

    Collapse monitors get the student's BACKBONE features of the two global crops (the
    representation used downstream; the head's ``K``-way logits are a distribution, whose
    collapse ``teacher_entropy`` tracks).

    Attributes:
      num_global_crops: views the teacher sees (the first ones).
      student_temp: student softmax temperature.
      teacher_temp: teacher temperature after the warm-up.
      warmup_teacher_temp: teacher temperature at step 0.
      warmup_teacher_temp_steps: length of the linear warm-up, in optimiser steps.
      center_momentum: EMA momentum of the center.
      freeze_last_layer_steps: steps during which the head's last layer gets no gradient.
      target_exclude: online parameter collections the teacher lacks (none: it has the head).

    References:
      Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021
      (Alg. 1; facebookresearch/dino ``main_dino.py``).
    """

    num_global_crops: int = 2
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_steps: int = 0
    center_momentum: float = 0.9
    freeze_last_layer_steps: int = 0
    target_exclude: tuple[str, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        if self.net.predictor is not None:
            raise ValueError("DINO has no predictor: the DINOHead is the projector")
        if self.num_global_crops < 1:
            raise ValueError(f"num_global_crops must be >= 1, got {self.num_global_crops}")
        if self.freeze_last_layer_steps < 0:
            raise ValueError("freeze_last_layer_steps must be >= 0")
        teacher_temperature(
            0,
            warmup=self.warmup_teacher_temp,
            final=self.teacher_temp,
            warmup_steps=self.warmup_teacher_temp_steps,
        )

    def init(self, rng, images):
        views = self.views(jax.random.split(rng, images.shape[0]), images)
        params, stats = init_net(self.net, rng, views[0])
        _, z, _ = jax.eval_shape(
            lambda x: self.net.apply(bn_vars(params, stats), x, train=False), views[0]
        )
        aux = {**self.init_target(params, stats), "center": jnp.zeros(z.shape[-1], jnp.float32)}
        return {"params": params, "batch_stats": stats, "aux": aux}

    def temperature(self, step: jax.Array) -> jax.Array:
        """The teacher temperature at optimiser step ``step`` (:func:`teacher_temperature`)."""
        return teacher_temperature(
            step,
            warmup=self.warmup_teacher_temp,
            final=self.teacher_temp,
            warmup_steps=self.warmup_teacher_temp_steps,
        )

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n, g = views[0].shape[0], self.num_global_crops
        if len(views) < max(g, 2):
            raise ValueError(f"DINO needs at least {max(g, 2)} views, got {len(views)}")
        (h, s_out, _), stats = apply_train(
            self.net, params, batch_stats, list(views), method=multi_crop_forward, train=True
        )
        (_, t_out, _), t_stats = apply_train(
            self.net,
            aux["target_params"],
            aux["target_batch_stats"],
            list(views[:g]),
            method=multi_crop_forward,
            train=True,
        )
        # stop_gradient: the teacher is an EMA of the student, never trained by gradients.
        t_out = split_views(jax.lax.stop_gradient(t_out), g)
        s_out = split_views(s_out, len(views))
        temp = self.temperature(step)
        center = aux["center"]
        loss = losses.dino_loss(
            s_out,
            t_out,
            center,
            student_temp=self.student_temp,
            teacher_temp=temp,
            axis_name=axis_name,
        )
        new_center = losses.dino_center_update(
            center, t_out, momentum=self.center_momentum, axis_name=axis_name
        )
        probs = jax.nn.softmax((concat_views(t_out).astype(jnp.float32) - center) / temp, axis=-1)
        entropy = -jnp.mean(jnp.sum(probs * jnp.log(jnp.maximum(probs, 1e-30)), axis=-1))
        out = LossOutput(
            batch_stats=stats,
            aux=dict(aux, target_batch_stats=t_stats, center=new_center),
            metrics={"dino": loss, "teacher_entropy": entropy},
            embeddings=(h[:n], h[n : 2 * n]),
            features=h[:n],
        )
        return loss, out

    def grad_mask(self, grads, step):
        if not self.freeze_last_layer_steps:
            return grads
        return zero_grads_for(grads, _is_last_layer, active=step < self.freeze_last_layer_steps)

    def step_metrics(self, aux, step):
        return {**super().step_metrics(aux, step), "teacher_temp": self.temperature(step)}
