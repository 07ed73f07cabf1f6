"""SimCLR on ImageNet with ResNet-50 (Chen et al. 2020: LARS 0.3 x B/256, T=0.1, B=4096)."""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "simclr"
    c.augment.recipe = "simclr"
    c.loss.temperature = 0.1
    c.head.proj_hidden = 2048
    c.head.proj_dim = 128
    c.optim.name = "lars"
    c.optim.base_lr = 0.3
    c.optim.weight_decay = 1e-6
    c.data.batch_size = 4096
    c.train.epochs = 100
    return variant(c, name)
