"""MAE on CIFAR-10 with ViT-S/4 on 32px images (64 patches, 16 visible).

The MAE paper has no CIFAR recipe; this is solo-learn's (``scripts/pretrain/cifar/mae.yaml``):
decoder 512 wide, 8 blocks, 16 heads, mask ratio 0.75, normalised pixel targets, AdamW lr
2e-4 x B/256, weight decay 0.05, betas (0.9, 0.95), batch 256, 1000 epochs, crop + flip
views. ``optim.b2`` is set here for the optimiser builder. Variants: ``:tiny`` (ViT-Ti/8,
1-block 32-wide decoder), ``:demo``.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "mae"
    c.augment.recipe = "mae_cifar"
    c.model.encoder = "vit_small"
    c.model.patch_size = 4
    c.mae = ml_collections.ConfigDict(
        {
            "mask_ratio": 0.75,
            "decoder_dim": 512,
            "decoder_depth": 8,
            "decoder_heads": 16,
            "norm_pix_loss": True,
        }
    )
    c.optim.name = "adamw"
    c.optim.base_lr = 2e-4
    c.optim.weight_decay = 0.05
    c.optim.b2 = 0.95
    c.data.batch_size = 256
    c.train.epochs = 1000
    c = variant(c, name)
    if name == "tiny":
        c.mae.decoder_dim = 32
        c.mae.decoder_depth = 1
        c.mae.decoder_heads = 2
    return c
