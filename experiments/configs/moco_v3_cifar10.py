"""MoCo v3 on CIFAR-10 with a CIFAR-stem ResNet-18.

The MoCo v3 paper has no CIFAR recipe; this is solo-learn's (``scripts/pretrain/cifar/
mocov3.yaml``): projector 4096 -> 256 (3 layers, last BN), predictor 4096, temperature 0.2,
momentum 0.99 -> 1 (cosine), LARS lr 0.3 x B/256, weight decay 1e-6, batch 256, 1000 epochs,
BYOL's asymmetric views without blur. Variants: ``:tiny``, ``:demo``.
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "moco_v3"
    c.augment.recipe = "byol_cifar"
    c.head.proj_layers = 3
    c.head.proj_hidden = 4096
    c.head.proj_dim = 256
    c.head.last_bn = True
    c.head.pred_hidden = 4096
    c.loss.temperature = 0.2
    c.train.ema_base = 0.99
    c.train.ema_final = 1.0
    c.optim.name = "lars"
    c.optim.base_lr = 0.3
    c.optim.weight_decay = 1e-6
    c.data.batch_size = 256
    c.train.epochs = 1000
    return variant(c, name)
