"""SimCLR on CIFAR-10 with a CIFAR-stem ResNet-18 (Chen et al. 2020, appendix B.9 recipe).

Variants: ``:tiny`` (a few steps on CPU), ``:demo`` (the README's short CPU run).
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "simclr"
    c.augment.recipe = "simclr_cifar"
    c.loss.temperature = 0.5
    c.head.proj_hidden = 2048
    c.head.proj_dim = 128
    c.optim.name = "lars"
    c.optim.base_lr = 0.075  # square-root scaling, the paper's rule for small batches
    c.optim.lr_scaling = "sqrt"
    c.optim.weight_decay = 1e-6
    c.data.batch_size = 512
    c.train.epochs = 1000
    return variant(c, name)
