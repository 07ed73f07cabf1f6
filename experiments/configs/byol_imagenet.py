"""BYOL on ImageNet with ResNet-50 (Grill et al. 2020, Sec. 3.3 / App. C).

Projector 4096 -> 256 and predictor 4096 (BN in the hidden layers), EMA 0.996 -> 1 (cosine),
LARS lr 0.2 x B/256 with 10 warm-up epochs, weight decay 1.5e-6, batch 4096, 1000 epochs.
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "byol"
    c.augment.recipe = "byol"
    c.head.proj_hidden = 4096
    c.head.proj_dim = 256
    c.head.pred_hidden = 4096
    c.train.ema_base = 0.996
    c.train.ema_final = 1.0
    c.optim.name = "lars"
    c.optim.base_lr = 0.2
    c.optim.weight_decay = 1.5e-6
    c.optim.warmup_epochs = 10
    c.data.batch_size = 4096
    c.train.epochs = 1000
    return variant(c, name)
