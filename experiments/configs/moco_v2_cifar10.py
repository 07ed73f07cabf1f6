"""MoCo v2 on CIFAR-10 with a CIFAR-stem ResNet-18, after the official CIFAR-10 demo.

facebookresearch/moco ``colab/moco_cifar10_demo.ipynb``: queue K=4096, momentum 0.99
(constant), temperature 0.1, symmetric loss, SGD lr 0.06 at batch 512 (0.03 x B/256),
momentum 0.9, weight decay 5e-4, cosine schedule without warm-up, 200 epochs. The head is
MoCo v2's 2-layer MLP (2048 -> 128, no BN); BatchNorm is global (no split/shuffle BN).
Variants: ``:tiny`` (queue 64), ``:demo``.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "moco_v2"
    c.augment.recipe = "moco_v2_cifar"
    c.head.proj_layers = 2
    c.head.proj_hidden = 2048
    c.head.proj_dim = 128
    c.loss.temperature = 0.1
    c.moco = ml_collections.ConfigDict({"queue_size": 4096, "symmetric": True})
    c.train.ema_base = 0.99
    c.train.ema_final = 0.99  # MoCo's momentum is constant
    c.optim.name = "sgd"
    c.optim.base_lr = 0.03
    c.optim.weight_decay = 5e-4
    c.optim.momentum = 0.9
    c.optim.warmup_epochs = 0
    c.data.batch_size = 512
    c.train.epochs = 200
    c = variant(c, name)
    if name == "tiny":
        c.moco.queue_size = 64
    return c
