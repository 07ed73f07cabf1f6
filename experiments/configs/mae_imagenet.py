"""MAE on ImageNet with ViT-B/16 (He et al. 2022, App. A.1).

Decoder 512 wide, 8 blocks, 16 heads, mask ratio 0.75, normalised pixel targets, AdamW lr
1.5e-4 x B/256 with 40 warm-up epochs, weight decay 0.05, betas (0.9, 0.95), batch 4096,
800 epochs, crop (0.2-1) + flip views. ``optim.b2`` is set here for the optimiser builder.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "mae"
    c.augment.recipe = "mae"
    c.model.encoder = "vit_base"
    c.model.patch_size = 16
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
    c.optim.base_lr = 1.5e-4
    c.optim.weight_decay = 0.05
    c.optim.b2 = 0.95
    c.optim.warmup_epochs = 40
    c.data.batch_size = 4096
    c.train.epochs = 800
    c = variant(c, name)
    if name == "tiny":
        c.mae.decoder_dim = 32
        c.mae.decoder_depth = 1
        c.mae.decoder_heads = 2
    return c
