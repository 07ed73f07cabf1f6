"""Barlow Twins on ImageNet with ResNet-50 (Zbontar et al. 2021, Sec. 4 / official code).

Projector 3 x 8192, lambda 0.0051 (the official code; the paper rounds it to 5e-3), LARS
lr 0.2 x B/256 for weights with 10 warm-up epochs, weight decay 1.5e-6, batch 2048,
1000 epochs. Not reproduced: the separate 0.0048 x B/256 learning rate of biases and BN
parameters.
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "barlow_twins"
    c.augment.recipe = "barlow_twins"
    c.head.proj_layers = 3
    c.head.proj_hidden = 8192
    c.head.proj_dim = 8192
    c.loss.lambda_ = 0.0051
    c.loss.scale = 1.0
    c.optim.name = "lars"
    c.optim.base_lr = 0.2
    c.optim.weight_decay = 1.5e-6
    c.optim.warmup_epochs = 10
    c.data.batch_size = 2048
    c.train.epochs = 1000
    return variant(c, name)
