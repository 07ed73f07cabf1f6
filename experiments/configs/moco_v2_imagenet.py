"""MoCo v2 on ImageNet with ResNet-50 (Chen et al. 2020, arXiv:2003.04297).

Queue K=65536, momentum 0.999 (constant), temperature 0.2, MLP head 2048 -> 128 (no BN),
``aug_plus`` views, SGD lr 0.03 x B/256 (batch 256), momentum 0.9, weight decay 1e-4,
cosine schedule, 200 epochs. BatchNorm is global under ``jit`` (no shuffle BN).
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "moco_v2"
    c.augment.recipe = "moco_v2"
    c.head.proj_layers = 2
    c.head.proj_hidden = 2048
    c.head.proj_dim = 128
    c.loss.temperature = 0.2
    c.moco = ml_collections.ConfigDict({"queue_size": 65536, "symmetric": False})
    c.train.ema_base = 0.999
    c.train.ema_final = 0.999
    c.optim.name = "sgd"
    c.optim.base_lr = 0.03
    c.optim.weight_decay = 1e-4
    c.optim.momentum = 0.9
    c.optim.warmup_epochs = 0
    c.data.batch_size = 256
    c.train.epochs = 200
    c = variant(c, name)
    if name == "tiny":
        c.moco.queue_size = 64
    return c
