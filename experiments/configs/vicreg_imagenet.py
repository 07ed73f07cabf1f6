"""VICReg on ImageNet with ResNet-50 (Bardes, Ponce & LeCun 2022, Sec. 4.1 / App. C).

Expander 3 x 8192, coefficients 25 / 25 / 1, LARS lr 0.2 x B/256 with 10 warm-up epochs,
weight decay 1e-6, batch 2048, 1000 epochs.
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "vicreg"
    c.augment.recipe = "vicreg"
    c.head.proj_layers = 3
    c.head.proj_hidden = 8192
    c.head.proj_dim = 8192
    c.loss.sim_coeff = 25.0
    c.loss.std_coeff = 25.0
    c.loss.cov_coeff = 1.0
    c.optim.name = "lars"
    c.optim.base_lr = 0.2
    c.optim.weight_decay = 1e-6
    c.optim.warmup_epochs = 10
    c.data.batch_size = 2048
    c.train.epochs = 1000
    return variant(c, name)
