"""NNCLR on ImageNet with ResNet-50 (Dwibedi et al. 2021, Sec. 3-4).

Projector 2048 -> 2048 -> 256 with BatchNorm on every layer, predictor 4096 -> 256, a
98,304-row support set of view-1 projections, temperature 0.1, symmetric loss, BYOL's
views; LARS lr 0.3 x B/256 with 10 warm-up epochs and cosine decay, weight decay 1e-6,
batch 4096, 1000 epochs.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "nnclr"
    c.augment.recipe = "byol"
    c.head.proj_layers = 3
    c.head.proj_hidden = 2048
    c.head.proj_dim = 256
    c.head.last_bn = True
    c.head.pred_hidden = 4096
    c.loss.temperature = 0.1
    c.nnclr = ml_collections.ConfigDict({"queue_size": 98304})
    c.optim.name = "lars"
    c.optim.base_lr = 0.3
    c.optim.weight_decay = 1e-6
    c.optim.warmup_epochs = 10
    c.data.batch_size = 4096
    c.train.epochs = 1000
    c = variant(c, name)
    if name == "tiny":
        c.nnclr.queue_size = 64
    if name == "demo":
        c.nnclr.queue_size = 4096
        c.head.pred_hidden = 512
    return c
