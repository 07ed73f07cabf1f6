"""BYOL on CIFAR-10 with a CIFAR-stem ResNet-18.

The BYOL paper has no CIFAR recipe; this is solo-learn's (da Costa et al., JMLR 2022,
``scripts/pretrain/cifar/byol.yaml``): projector 4096 -> 256, predictor 4096, EMA 0.99 -> 1,
LARS lr 1.0 x B/256, weight decay 1e-5, batch 256, 1000 epochs, BYOL's asymmetric views
without blur. Variants: ``:tiny``, ``:demo``.
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "byol"
    c.augment.recipe = "byol_cifar"
    c.head.proj_hidden = 4096
    c.head.proj_dim = 256
    c.head.pred_hidden = 4096
    c.train.ema_base = 0.99
    c.train.ema_final = 1.0
    c.optim.name = "lars"
    c.optim.base_lr = 1.0
    c.optim.weight_decay = 1e-5
    c.data.batch_size = 256
    c.train.epochs = 1000
    return variant(c, name)
