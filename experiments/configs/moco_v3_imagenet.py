"""MoCo v3 on ImageNet with ResNet-50 (Chen, Xie & He 2021; moco-v3 ``CONFIG.md``).

Projector 4096 -> 256 (3 layers, last BN without affine), predictor 4096, temperature 1.0
(the official ResNet-50 default; 0.2 is its ViT setting), momentum 0.99 -> 1 (cosine), LARS
lr 0.6 x B/256 with 10 warm-up epochs, weight decay 1e-6, batch 4096, 100 epochs, BYOL's
views (the official ResNet runs use crop scale min 0.2 instead of 0.08).
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "moco_v3"
    c.augment.recipe = "byol"
    c.head.proj_layers = 3
    c.head.proj_hidden = 4096
    c.head.proj_dim = 256
    c.head.last_bn = True
    c.head.pred_hidden = 4096
    c.loss.temperature = 1.0
    c.train.ema_base = 0.99
    c.train.ema_final = 1.0
    c.optim.name = "lars"
    c.optim.base_lr = 0.6
    c.optim.weight_decay = 1e-6
    c.optim.warmup_epochs = 10
    c.data.batch_size = 4096
    c.train.epochs = 100
    return variant(c, name)
