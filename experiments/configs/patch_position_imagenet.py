"""Relative patch position (Doersch et al. 2015) on ImageNet with ResNet-50.

The paper cuts 96-px patches with a 48-px gap and up to 7 px of jitter per patch from
images of 150k-450k pixels, and drops colour (one random channel kept per patch, the others
replaced by faint noise) against chromatic aberration. Its 3x3 grid needs 398 px; the
images here stay at the 224 px every ImageNet config trains and evaluates at, so the
geometry is the paper's scaled by 0.54 with its proportions kept (gap = half a patch,
jitter = 7/96 of a patch): 52-px patches, a 26-px gap, 4 px of jitter (3 * 52 + 2 * 26 +
2 * 4 = 216 px). The patches go to the encoder at that size (ResNet-50 ends on 2x2 maps),
so objects have the same scale in training and in the 224-px evaluation. Colour dropping
on. Views: one crop + flip (``mae``). Late fusion as the paper's pair network: the
ResNet-50 features of both patches concatenated, a 4096-wide hidden layer (fc7), 8 outputs.
Optimiser: the paper trained a Caffe AlexNet/VGG for weeks; here the standard ResNet-50 SGD
recipe (momentum 0.9, lr 0.1 x B/256, weight decay 1e-4, 5 warm-up epochs, cosine) for 100
epochs at batch 256. The ``:tiny`` variant runs at 32 px with the CIFAR geometry.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "patch_position"
    c.augment.recipe = "mae"
    c.patch_position = ml_collections.ConfigDict(
        {"patch_size": 52, "gap": 26, "jitter": 4, "color_drop": True, "input_size": 0, "grid": 3}
    )
    c.head.proj_hidden = 4096
    c.head.proj_layers = 2
    c.optim.name = "sgd"
    c.optim.base_lr = 0.1
    c.optim.weight_decay = 1e-4
    c.optim.momentum = 0.9
    c.optim.warmup_epochs = 5
    c.data.batch_size = 256
    c.train.epochs = 100
    c = variant(c, name)
    if name == "tiny":  # 32-px images: the CIFAR-10 config's geometry
        c.patch_position.update({"patch_size": 8, "gap": 3, "jitter": 1, "input_size": 16})
    return c
