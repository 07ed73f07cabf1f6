"""NNCLR on CIFAR-10 with a CIFAR-stem ResNet-18.

The NNCLR paper has no CIFAR recipe; this is solo-learn's (da Costa et al., JMLR 2022,
``scripts/pretrain/cifar/nnclr.yaml``): projector 2048 -> 2048 -> 256 with BatchNorm on every
layer, predictor 4096 -> 256, a 65,536-row support set, temperature 0.2 (the paper uses 0.1
on ImageNet), BYOL's asymmetric views without blur, LARS lr 0.4 x B/256 with 10 warm-up
epochs, weight decay 1e-5, batch 256, 1000 epochs. Variants: ``:tiny`` (a 64-row support
set), ``:demo`` (a 4,096-row support set, which replaces its random initial rows within 16
steps of batch 256, and a predictor as wide as the demo's 512-wide projector: a CPU run of
a few hundred steps).
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "nnclr"
    c.augment.recipe = "byol_cifar"
    c.head.proj_layers = 3
    c.head.proj_hidden = 2048
    c.head.proj_dim = 256
    c.head.last_bn = True
    c.head.pred_hidden = 4096
    c.loss.temperature = 0.2
    c.nnclr = ml_collections.ConfigDict({"queue_size": 65536})
    c.optim.name = "lars"
    c.optim.base_lr = 0.4
    c.optim.weight_decay = 1e-5
    c.optim.warmup_epochs = 10
    c.data.batch_size = 256
    c.train.epochs = 1000
    c = variant(c, name)
    if name == "tiny":
        c.nnclr.queue_size = 64
    if name == "demo":
        c.nnclr.queue_size = 4096
        c.head.pred_hidden = 512
    return c
