"""VICReg on CIFAR-10 with a CIFAR-stem ResNet-18.

The paper has no CIFAR recipe; this is solo-learn's (``scripts/pretrain/cifar/vicreg.yaml``):
expander 3 x 2048, coefficients 25 / 25 / 1, LARS lr 0.3 x B/256, weight decay 1e-4, batch
256, 1000 epochs, VICReg's views without blur. Variants: ``:tiny``, ``:demo``.
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "vicreg"
    c.augment.recipe = "vicreg_cifar"
    c.head.proj_layers = 3
    c.head.proj_hidden = 2048
    c.head.proj_dim = 2048
    c.loss.sim_coeff = 25.0
    c.loss.std_coeff = 25.0
    c.loss.cov_coeff = 1.0
    c.optim.name = "lars"
    c.optim.base_lr = 0.3
    c.optim.weight_decay = 1e-4
    c.data.batch_size = 256
    c.train.epochs = 1000
    return variant(c, name)
