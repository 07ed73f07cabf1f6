"""Rotation prediction (RotNet) on CIFAR-10 with a CIFAR-stem ResNet-18.

Gidaris et al. 2018's CIFAR-10 optimisation: SGD lr 0.1 at batch 128 (0.2 x B/256),
momentum 0.9, weight decay 5e-4, 100 epochs (cosine here instead of their step decay at
30/60/80). Their CIFAR network is a NIN; here a ResNet-18 with a linear 4-way head. Views:
one crop + flip (the ``mae_cifar`` recipe), turned 0/90/180/270 degrees. Variants:
``:tiny``, ``:demo``.
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "rotation"
    c.augment.recipe = "mae_cifar"
    c.optim.name = "sgd"
    c.optim.base_lr = 0.2
    c.optim.weight_decay = 5e-4
    c.optim.momentum = 0.9
    c.optim.warmup_epochs = 0
    c.data.batch_size = 128
    c.train.epochs = 100
    return variant(c, name)
