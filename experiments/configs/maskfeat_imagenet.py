"""MaskFeat on ImageNet with ViT-B/16 (Wei et al. 2022, image pre-training recipe).

Block-wise masking of 40% of the 196 patches (BEiT's generator), HOG targets: Sobel
gradients, 9 unsigned orientation bins over 8x8 cells (2 x 2 cells per 16px patch), the
16px Gaussian window, L2 normalisation per cell and colour channel, RGB concatenated
(108 values per patch); linear head, MSE on masked patches; AdamW lr 2e-4 x B/256, betas
(0.9, 0.999), weight decay 0.05, gradient clipping at norm 0.02, 30 warm-up epochs, batch
2048, 300 epochs (mmselfsup ``maskfeat_vit-base-p16_8xb256-amp-coslr-300e_in1k``; the
paper's longest schedule is 1600 epochs). Views: crop + flip (``mae`` recipe, scale 0.2-1;
the paper crops at 0.5-1). Not reproduced: no weight decay on biases / LayerNorm.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "maskfeat"
    c.augment.recipe = "mae"
    c.model.encoder = "vit_base"
    c.model.patch_size = 16
    c.maskfeat = ml_collections.ConfigDict(
        {
            "mask_ratio": 0.4,
            "mask_shape": "block",
            "cell_size": 8,
            "num_bins": 9,
            "norm_cells": 1,
        }
    )
    c.optim.name = "adamw"
    c.optim.base_lr = 2e-4
    c.optim.weight_decay = 0.05
    c.optim.b2 = 0.999
    c.optim.clip_grad_norm = 0.02
    c.optim.warmup_epochs = 30
    c.data.batch_size = 2048
    c.train.epochs = 300
    c = variant(c, name)
    if name == "tiny":
        c.maskfeat.cell_size = 8
    return c
