"""MaskFeat on CIFAR-10 with ViT-S/4 on 32px images (64 patches, one HOG cell each).

The MaskFeat paper has no CIFAR recipe. Kept from its ImageNet image recipe (Wei et al.
2022, Sec. 4 / App.; mmselfsup ``maskfeat_vit-base-p16_8xb256-amp-coslr-300e_in1k``):
block-wise masking of 40% of the patches, HOG targets with 9 unsigned orientation bins,
Sobel gradients, a Gaussian window over each patch and per-cell L2 normalisation per colour
channel, a linear prediction head, MSE on masked patches, AdamW lr 2e-4 x B/256, betas
(0.9, 0.999), weight decay 0.05, gradient clipping at norm 0.02. Adapted to 32px: ViT-S/4
as ``mae_cifar10.py``, HOG cells of 4 px (one per patch: 3 x 9 = 27 targets per patch,
where ImageNet's 16px patches hold 2 x 2 cells of 8 px), crop + flip views (``mae_cifar``,
scale 0.2-1; the paper crops at 0.5-1), batch 256, 1000 epochs with 10 warm-up epochs.
Variants: ``:tiny`` (ViT-Ti/8, 2 blocks), ``:demo`` (ViT-Ti/4 with 4 blocks, for CPU: about
the compute per step of MAE's CPU form, ViT-Ti/4 with 12 blocks on a quarter of the tokens).
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "maskfeat"
    c.augment.recipe = "mae_cifar"
    c.model.encoder = "vit_small"
    c.model.patch_size = 4
    c.maskfeat = ml_collections.ConfigDict(
        {
            "mask_ratio": 0.4,
            "mask_shape": "block",  # or "random"
            "cell_size": 4,
            "num_bins": 9,
            "norm_cells": 1,  # L2-normalise each cell (official HOGLayerC)
        }
    )
    c.optim.name = "adamw"
    c.optim.base_lr = 2e-4
    c.optim.weight_decay = 0.05
    c.optim.b2 = 0.999
    c.optim.clip_grad_norm = 0.02
    c.data.batch_size = 256
    c.train.epochs = 1000
    c = variant(c, name)
    if name == "tiny":
        c.maskfeat.cell_size = 8  # ViT-Ti/8 of make_tiny: one 8px cell per patch
    if name == "demo":
        # A few CPU minutes: every token goes through the encoder (no MAE-style dropping),
        # so the encoder is ViT-Ti/4 with a third of its blocks.
        c.model.encoder = "vit_tiny"
        c.model.depth = 4
    return c
