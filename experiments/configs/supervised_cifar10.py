"""Supervised baseline on CIFAR-10: the self-supervised runs' CIFAR-stem ResNet-18 and views,
trained with cross entropy on the labels.

The views are SimCLR's CIFAR recipe (``simclr_cifar``: the augmentation of the
self-supervised runs, as in SimCLR's supervised baseline, Chen et al. 2020, Fig. 5); the
optimiser is the standard CIFAR ResNet recipe (He et al. 2016; cosine instead of step
decay): SGD, momentum 0.9, lr 0.1 at batch 128 (0.2 x B/256), weight decay 5e-4, 200
epochs. Variants: ``:tiny`` (a few CPU steps), ``:demo`` (a few CPU minutes).
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "supervised"
    c.augment.recipe = "simclr_cifar"
    c.loss.label_smoothing = 0.0
    c.optim.name = "sgd"
    c.optim.base_lr = 0.2
    c.optim.lr_scaling = "linear"
    c.optim.weight_decay = 5e-4
    c.optim.momentum = 0.9
    c.optim.warmup_epochs = 0
    c.data.batch_size = 256
    c.train.epochs = 200
    return variant(c, name)
