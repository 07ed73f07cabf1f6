"""One builder per method: config -> ``Method``. The dict at the bottom is the only registry.

Schedules inside a method (EMA momentum, teacher temperature, frozen prototypes, queue
start) are given in epochs in the config and turned into optimiser steps here, from the run
length ``num_train_examples``.
"""

import functools

import ml_collections

from ssl_jax import augment, build
from ssl_jax import config as cfg
from ssl_jax.augment import patches, permutations
from ssl_jax.methods.barlow_twins import BarlowTwins
from ssl_jax.methods.base import Method
from ssl_jax.methods.byol import BYOL
from ssl_jax.methods.colorization import Colorization, ColorizationHead, ColorizationNet
from ssl_jax.methods.dino import DINO
from ssl_jax.methods.ibot import IBOT, IBOTNet
from ssl_jax.methods.jigsaw import Jigsaw
from ssl_jax.methods.late_fusion import LateFusionNet
from ssl_jax.methods.mae import MAE, MAENet
from ssl_jax.methods.maskfeat import MaskFeat, MaskFeatNet
from ssl_jax.methods.moco import MoCoV2, MoCoV3
from ssl_jax.methods.networks import SiameseNet
from ssl_jax.methods.nnclr import NNCLR
from ssl_jax.methods.patch_position import PatchPosition
from ssl_jax.methods.rotation import RotationPrediction
from ssl_jax.methods.simclr import SimCLR
from ssl_jax.methods.simsiam import SimSiam
from ssl_jax.methods.supervised import supervised
from ssl_jax.methods.swav import PrototypeHead, SwAV
from ssl_jax.methods.vicreg import VICReg
from ssl_jax.models import ConvNet, ResNet, heads
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


def _masked_vit(c: ml_collections.ConfigDict, method: str):
    """The configured ViT with the learned mask token that ``token_mask`` needs."""
    if not c.model.encoder.startswith("vit"):
        raise ValueError(
            f"{method} needs a ViT encoder (model.encoder=vit_*), got {c.model.encoder!r}"
        )
    if c.data.image_size % c.model.patch_size:
        raise ValueError(
            f"data.image_size={c.data.image_size} is not a multiple of patch {c.model.patch_size}"
        )
    return build.encoder(c).clone(use_mask_token=True)


def maskfeat(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    del num_train_examples  # no schedule inside MaskFeat
    m, p = c.maskfeat, c.model.patch_size
    target_dim = (p // m.cell_size) ** 2 * 3 * m.num_bins
    net = MaskFeatNet(
        encoder=_masked_vit(c, "MaskFeat"), target_dim=target_dim, dtype=build.dtype(c)
    )
    return MaskFeat(
        view_fn=build.view_fn(c),
        net=net,
        patch_size=p,
        mask_ratio=m.mask_ratio,
        mask_shape=m.mask_shape,
        cell_size=m.cell_size,
        num_bins=m.num_bins,
        norm_cells=m.norm_cells,
    )


def ibot(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    d = c.ibot

    def head(out_dim: int) -> heads.DINOHead:
        return heads.DINOHead(
            out_dim=out_dim,
            hidden_dim=d.hidden_dim,
            bottleneck_dim=d.bottleneck_dim,
            use_bn=d.use_bn_in_head,
            norm_last_layer=d.norm_last_layer,
            bn_axis_name=build.bn_axis(c),
            dtype=build.dtype(c),
        )

    net = IBOTNet(
        encoder=_masked_vit(c, "iBOT"),
        head=head(d.out_dim),
        patch_head=None if d.shared_head else head(d.patch_out_dim),
    )
    steps = functools.partial(epochs_to_steps, c, num_train_examples)
    return IBOT(
        view_fn=build.view_fn(c),
        net=net,
        patch_size=c.model.patch_size,
        num_global_crops=2,
        student_temp=d.student_temp,
        teacher_temp=d.teacher_temp,
        warmup_teacher_temp=d.warmup_teacher_temp,
        teacher_patch_temp=d.teacher_patch_temp,
        warmup_teacher_patch_temp=d.warmup_teacher_patch_temp,
        warmup_teacher_temp_steps=steps(d.warmup_teacher_temp_epochs),
        center_momentum=d.center_momentum,
        patch_center_momentum=d.center_momentum,
        lambda_cls=d.lambda_cls,
        lambda_patch=d.lambda_patch,
        mask_prob=d.mask_prob,
        mask_ratio_range=(d.mask_ratio - d.mask_ratio_var, d.mask_ratio + d.mask_ratio_var),
        freeze_last_layer_steps=steps(d.freeze_last_layer_epochs),
        **_ema(c, num_train_examples),
    )


def colorization(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    del num_train_examples  # no schedule inside colourisation
    if not (c.model.encoder.startswith("resnet") or c.model.encoder == "convnet"):
        raise ValueError(
            "colorization needs a convolutional encoder (model.encoder=resnet*/convnet), got "
            f"{c.model.encoder!r}"
        )
    g = c.colorization
    recipe = augment.get_recipe(c.augment.recipe)
    head = ColorizationHead(width=g.head_width, bn_axis_name=build.bn_axis(c), dtype=build.dtype(c))
    return Colorization(
        view_fn=build.view_fn(c),
        net=ColorizationNet(encoder=build.encoder(c), head=head, downsample=g.downsample),
        mean=tuple(recipe.mean),
        std=tuple(recipe.std),
        num_neighbors=g.num_neighbors,
        sigma=g.sigma,
        lambda_=g.lambda_,
    )


def nnclr(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    del num_train_examples  # no schedule inside NNCLR
    # The projector's output BatchNorm has scale and offset (torch's BatchNorm1d, solo-learn).
    net = SiameseNet(
        encoder=build.encoder(c),
        projector=build.projector(c, last_bn_affine=True),
        predictor=build.predictor(c),
    )
    return NNCLR(
        view_fn=build.view_fn(c),
        net=net,
        queue_size=c.nnclr.queue_size,
        temperature=c.loss.temperature,
    )


def _late_fusion_net(c: ml_collections.ConfigDict, num_classes: int, tile_fc: int) -> LateFusionNet:
    """The configured encoder per patch, the per-patch fc layer (``tile_fc`` wide, 0: none)
    and the fusion MLP (``head.proj_*``) to the classes."""
    if tile_fc < 0:
        raise ValueError(f"tile_fc must be a width >= 1 or 0 (none), got {tile_fc}")
    encoder = build.encoder(c)
    fc = None
    if tile_fc:
        if not isinstance(encoder, ConvNet | ResNet):
            raise ValueError(
                f"tile_fc needs a convolutional encoder (convnet, resnet*) whose feature map it "
                f"reads, got model.encoder = {c.model.encoder!r}"
            )
        fc = heads.MLP(
            hidden_dims=(),
            out_dim=tile_fc,
            last_bn=True,
            last_bn_affine=True,
            bn_axis_name=build.bn_axis(c),
            dtype=build.dtype(c),
        )
    return LateFusionNet(encoder=encoder, head=build.projector(c, out_dim=num_classes), tile_fc=fc)


def patch_position(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    del num_train_examples  # no schedule inside the method
    p = c.patch_position
    grid = p.get("grid", 3)
    need = patches.patch_grid_size(patch_size=p.patch_size, gap=p.gap, jitter=p.jitter, grid=grid)
    if need > c.data.image_size:
        raise ValueError(
            f"patch_position: a {grid}x{grid} grid of {p.patch_size}-px patches with gap "
            f"{p.gap} and jitter {p.jitter} needs {need}-px views, data.image_size is "
            f"{c.data.image_size}"
        )
    return PatchPosition(
        view_fn=build.view_fn(c),
        net=_late_fusion_net(c, patches.NUM_POSITIONS, p.get("tile_fc", 0)),
        patch_size=p.patch_size,
        gap=p.gap,
        jitter=p.jitter,
        color_drop=p.color_drop,
        grid=grid,
        patch_norm=p.get("patch_norm", "none"),
        input_size=p.input_size or None,
    )


def jigsaw(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    del num_train_examples  # no schedule inside the method
    j = c.jigsaw
    kind = j.get("placement", "cells")
    if kind == "cells":
        placement = {"cell_size": j.cell_size}
    elif kind == "spaced":
        placement = {"gap": j.gap, "jitter": j.jitter}
    else:
        raise ValueError(f"jigsaw.placement must be one of ('cells', 'spaced'), got {kind!r}")
    need = patches.jigsaw_size(
        tile_size=j.tile_size, grid=j.grid, margin=j.channel_shift, **placement
    )
    if need > c.data.image_size:
        raise ValueError(
            f"jigsaw: a {j.grid}x{j.grid} grid of {j.tile_size}-px tiles ({kind}: "
            f"{', '.join(f'{k} {v}' for k, v in placement.items())}) with "
            f"channel shift {j.channel_shift} needs {need}-px views, data.image_size is "
            f"{c.data.image_size}"
        )
    perms = permutations.maximal_hamming_permutations(
        j.num_permutations,
        num_tiles=j.grid**2,
        seed=j.permutation_seed,
        criterion=j.permutation_criterion,
    )
    return Jigsaw(
        view_fn=build.view_fn(c),
        net=_late_fusion_net(c, j.num_permutations, j.get("tile_fc", 0)),
        permutations=tuple(map(tuple, perms.tolist())),
        tile_size=j.tile_size,
        grid=j.grid,
        channel_shift=j.channel_shift,
        tile_norm=j.tile_norm,
        input_size=j.input_size or None,
        **placement,
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
    "maskfeat": maskfeat,
    "ibot": ibot,
    "colorization": colorization,
    "nnclr": nnclr,
    "patch_position": patch_position,
    "jigsaw": jigsaw,
    "supervised": supervised,  # the labelled baseline; its builder lives with the method
}
