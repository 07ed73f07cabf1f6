"""Colourisation (Zhang, Isola & Efros 2016) on CIFAR-10 with a CIFAR-stem ResNet-18.

The paper has no CIFAR recipe. Its objective on 32-px images: input L* of a crop + flip
view (``mae_cifar``; colour is the target, so no colour augmentation), 313 ab bins
predicted on an 8x8 grid (a quarter of the side, as the paper's 56 for 224) by a head on
the final 4x4 feature map upsampled, 5-nearest-bin soft targets with sigma 5, class
rebalancing with lambda 0.5. Optimisation after the paper's Adam (beta2 0.99): AdamW,
lr 2e-3 x B/256 (1e-3 at batch 128), decoupled weight decay 0.05, cosine decay without
warm-up, 100 epochs; in a 150-step CPU comparison of the ``:demo`` form it beat RotNet's
CIFAR SGD recipe (kNN 36.5% vs 35.1%, linear 46.1% vs 45.0%, 10k-image bank; an untrained
L*-input ConvNet: 31.7% / 43.4%). Variants: ``:tiny``, ``:demo``.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "colorization"
    c.augment.recipe = "mae_cifar"
    c.colorization = ml_collections.ConfigDict(
        {"downsample": 4, "num_neighbors": 5, "sigma": 5.0, "lambda_": 0.5, "head_width": 128}
    )
    c.optim.name = "adamw"
    c.optim.base_lr = 2e-3
    c.optim.b1 = 0.9
    c.optim.b2 = 0.99
    c.optim.weight_decay = 0.05
    c.optim.warmup_epochs = 0
    c.data.batch_size = 128
    c.train.epochs = 100
    c = variant(c, name)
    if name == "tiny":
        c.colorization.head_width = 32
    return c
