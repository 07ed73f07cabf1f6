"""Colourisation (Zhang, Isola & Efros 2016) on ImageNet with ResNet-50.

The paper's objective on a ResNet-50 instead of its VGG-style network: input L* of a
crop + flip view (``mae`` recipe; colour is the target, so no colour augmentation),
313 ab bins predicted on a 56x56 grid (a quarter of 224) by a head on the upsampled 7x7
feature map, 5-nearest-bin soft targets with sigma 5, class rebalancing with lambda 0.5.
Optimisation after the paper's Adam (beta2 0.99, weight decay 1e-3, lr 3e-5 at batch 40
for 450k iterations, ~14 epochs): AdamW with the lr scaled to batch 256 (1.9e-4), decoupled
weight decay 1e-3, cosine decay over 14 epochs.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "colorization"
    c.augment.recipe = "mae"
    c.colorization = ml_collections.ConfigDict(
        {"downsample": 4, "num_neighbors": 5, "sigma": 5.0, "lambda_": 0.5, "head_width": 256}
    )
    c.optim.name = "adamw"
    c.optim.base_lr = 1.9e-4
    c.optim.b1 = 0.9
    c.optim.b2 = 0.99
    c.optim.weight_decay = 1e-3
    c.optim.warmup_epochs = 0
    c.data.batch_size = 256
    c.train.epochs = 14
    c = variant(c, name)
    if name == "tiny":
        c.colorization.head_width = 32
    return c
