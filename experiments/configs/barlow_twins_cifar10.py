"""Barlow Twins on CIFAR-10 with a CIFAR-stem ResNet-18.

The paper has no CIFAR recipe; this is solo-learn's (``scripts/pretrain/cifar/barlow.yaml``):
projector 3 x 2048, lambda 0.0051, loss scaled by 0.1, LARS lr 0.3 x B/256, weight decay
1e-4, batch 256, 1000 epochs, BYOL-like asymmetric views without blur. Variants: ``:tiny``,
``:demo``.
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "barlow_twins"
    c.augment.recipe = "barlow_twins_cifar"
    c.head.proj_layers = 3
    c.head.proj_hidden = 2048
    c.head.proj_dim = 2048
    c.loss.lambda_ = 0.0051
    c.loss.scale = 0.1
    c.optim.name = "lars"
    c.optim.base_lr = 0.3
    c.optim.weight_decay = 1e-4
    c.data.batch_size = 256
    c.train.epochs = 1000
    return variant(c, name)
