"""One builder per method: config -> ``Method``. The dict at the bottom is the only registry.

Schedules inside a method (EMA momentum, teacher temperature, frozen prototypes, queue
start) are given in epochs in the config and turned into optimiser steps here, from the run
length ``num_train_examples``.
"""

import functools

import ml_collections

from ssl_jax import build
from ssl_jax import config as cfg
from ssl_jax.methods.barlow_twins import BarlowTwins
from ssl_jax.methods.base import Method
from ssl_jax.methods.byol import BYOL
from ssl_jax.methods.dino import DINO
from ssl_jax.methods.mae import MAE, MAENet
from ssl_jax.methods.moco import MoCoV2, MoCoV3
from ssl_jax.methods.networks import SiameseNet
from ssl_jax.methods.rotation import RotationPrediction
from ssl_jax.methods.simclr import SimCLR
from ssl_jax.methods.simsiam import SimSiam
from ssl_jax.methods.supervised import supervised
from ssl_jax.methods.swav import PrototypeHead, SwAV
from ssl_jax.methods.vicreg import VICReg
from ssl_jax.models import heads
from ssl_jax.models.masking import MAEDecoder


def epochs_to_steps(c: ml_collections.ConfigDict, num_train_examples: int, epochs: float) -> int:
    """``round(epochs * steps_per_epoch)``; a length given in epochs, as optimiser steps."""
    if epochs < 0:
        raise ValueError(f"a schedule length in epochs must be >= 0, got {epochs}")
    return round(epochs * cfg.steps_per_epoch(c, num_train_examples))


def _ema(c: ml_collections.ConfigDict, num_train_examples: int) -> dict:
    return dict(
        total_steps=cfg.total_steps(c, num_train_examples),
        ema_base=c.train.ema_base,
        ema_final=c.train.ema_final,
    )


def simclr(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    del num_train_examples  # no schedule inside SimCLR
    net = SiameseNet(encoder=build.encoder(c), projector=build.projector(c))
    return SimCLR(view_fn=build.view_fn(c), net=net, temperature=c.loss.temperature)


def byol(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    net = SiameseNet(
        encoder=build.encoder(c), projector=build.projector(c), predictor=build.predictor(c)
    )
    return BYOL(view_fn=build.view_fn(c), net=net, **_ema(c, num_train_examples))


def moco_v2(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    # MoCo v2's head is fc-ReLU-fc without BatchNorm.
    net = SiameseNet(encoder=build.encoder(c), projector=build.projector(c, use_bn=False))
    return MoCoV2(
        view_fn=build.view_fn(c),
        net=net,
        queue_size=c.moco.queue_size,
        temperature=c.loss.temperature,
        symmetric=c.moco.symmetric,
        **_ema(c, num_train_examples),
    )


def moco_v3(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    net = SiameseNet(
        encoder=build.encoder(c), projector=build.projector(c), predictor=build.predictor(c)
    )
    return MoCoV3(
        view_fn=build.view_fn(c),
        net=net,
        temperature=c.loss.temperature,
        **_ema(c, num_train_examples),
    )


def swav(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    head = PrototypeHead(c.swav.num_prototypes, dtype=build.dtype(c))
    net = SiameseNet(encoder=build.encoder(c), projector=build.projector(c), predictor=head)
    steps = functools.partial(epochs_to_steps, c, num_train_examples)
    return SwAV(
        view_fn=build.view_fn(c),
        net=net,
        num_high_res=2,
        temperature=c.loss.temperature,
        epsilon=c.swav.epsilon,
        sinkhorn_iters=c.swav.sinkhorn_iters,
        freeze_prototypes_steps=steps(c.swav.freeze_prototypes_epochs),
        queue_size=c.swav.queue_size,
        queue_start_step=steps(c.swav.queue_start_epochs),
    )


def dino(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    d = c.dino
    head = heads.DINOHead(
        out_dim=d.out_dim,
        hidden_dim=d.hidden_dim,
        bottleneck_dim=d.bottleneck_dim,
        use_bn=d.use_bn_in_head,
        norm_last_layer=d.norm_last_layer,
        bn_axis_name=build.bn_axis(c),
        dtype=build.dtype(c),
    )
    net = SiameseNet(encoder=build.encoder(c), projector=head)
    steps = functools.partial(epochs_to_steps, c, num_train_examples)
    return DINO(
        view_fn=build.view_fn(c),
        net=net,
        num_global_crops=2,
        student_temp=d.student_temp,
        teacher_temp=d.teacher_temp,
        warmup_teacher_temp=d.warmup_teacher_temp,
        warmup_teacher_temp_steps=steps(d.warmup_teacher_temp_epochs),
        center_momentum=d.center_momentum,
        freeze_last_layer_steps=steps(d.freeze_last_layer_epochs),
        **_ema(c, num_train_examples),
    )


def simsiam(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    del num_train_examples
    net = SiameseNet(
        encoder=build.encoder(c), projector=build.projector(c), predictor=build.predictor(c)
    )
    return SimSiam(view_fn=build.view_fn(c), net=net)


def barlow_twins(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    del num_train_examples
    net = SiameseNet(encoder=build.encoder(c), projector=build.projector(c))
    return BarlowTwins(
        view_fn=build.view_fn(c), net=net, lambda_=c.loss.lambda_, scale=c.loss.scale
    )


def vicreg(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    del num_train_examples
    net = SiameseNet(encoder=build.encoder(c), projector=build.projector(c))
    return VICReg(
        view_fn=build.view_fn(c),
        net=net,
        sim_coeff=c.loss.sim_coeff,
        std_coeff=c.loss.std_coeff,
        cov_coeff=c.loss.cov_coeff,
    )


def rotation(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    del num_train_examples
    head = heads.LinearClassifier(4, dtype=build.dtype(c))
    net = SiameseNet(encoder=build.encoder(c), projector=head)
    return RotationPrediction(view_fn=build.view_fn(c), net=net)


def mae(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    del num_train_examples
    if not c.model.encoder.startswith("vit"):
        raise ValueError(f"MAE needs a ViT encoder (model.encoder=vit_*), got {c.model.encoder!r}")
    p = c.model.patch_size
    if c.data.image_size % p:
        raise ValueError(f"data.image_size={c.data.image_size} is not a multiple of patch {p}")
    decoder = MAEDecoder(
        num_patches=(c.data.image_size // p) ** 2,
        patch_dim_out=p * p * 3,
        decoder_dim=c.mae.decoder_dim,
        depth=c.mae.decoder_depth,
        heads=c.mae.decoder_heads,
        dtype=build.dtype(c),
    )
    return MAE(
        view_fn=build.view_fn(c),
        net=MAENet(encoder=build.encoder(c), decoder=decoder),
        patch_size=p,
        mask_ratio=c.mae.mask_ratio,
        norm_pix_loss=c.mae.norm_pix_loss,
    )


BUILDERS = {
    "simclr": simclr,
    "byol": byol,
    "moco_v2": moco_v2,
    "moco_v3": moco_v3,
    "swav": swav,
    "dino": dino,
    "simsiam": simsiam,
    "barlow_twins": barlow_twins,
    "vicreg": vicreg,
    "rotation": rotation,
    "mae": mae,
    "supervised": supervised,  # the labelled baseline; its builder lives with the method
}
