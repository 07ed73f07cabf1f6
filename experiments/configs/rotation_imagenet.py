"""Rotation prediction on ImageNet with ResNet-50 (Kolesnikov, Zhai & Beyer, CVPR 2019).

Their RotNet recipe: SGD momentum 0.9, lr 0.1 x B/256 with 5 warm-up epochs, weight decay
1e-4, batch 2048, 35 epochs (cosine here instead of their step decays), a linear head on
the pooled features. Views: one crop + flip (the ``mae`` recipe), turned 0/90/180/270.
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "rotation"
    c.augment.recipe = "mae"
    c.optim.name = "sgd"
    c.optim.base_lr = 0.1
    c.optim.weight_decay = 1e-4
    c.optim.momentum = 0.9
    c.optim.warmup_epochs = 5
    c.data.batch_size = 2048
    c.train.epochs = 35
    return variant(c, name)
