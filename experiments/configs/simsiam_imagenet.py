"""SimSiam on ImageNet with ResNet-50 (Chen & He 2021, Sec. 3 "Baseline settings").

SGD lr 0.05 x B/256 (batch 512), momentum 0.9, weight decay 1e-4, cosine schedule without
warm-up, 100 epochs; projector 3 x 2048 (output BN without affine), predictor 512
bottleneck; MoCo v2 views. Not reproduced: the predictor's fixed (not decayed) learning
rate of the official README command (``--fix-pred-lr``).
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "simsiam"
    c.augment.recipe = "moco_v2"
    c.head.proj_layers = 3
    c.head.proj_hidden = 2048
    c.head.proj_dim = 2048
    c.head.last_bn = True
    c.head.pred_hidden = 512
    c.optim.name = "sgd"
    c.optim.base_lr = 0.05
    c.optim.weight_decay = 1e-4
    c.optim.momentum = 0.9
    c.optim.warmup_epochs = 0
    c.data.batch_size = 512
    c.train.epochs = 100
    return variant(c, name)
