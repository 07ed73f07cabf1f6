"""SimSiam on CIFAR-10 with a CIFAR-stem ResNet-18 (Chen & He 2021, App. D).

SGD lr 0.03 x B/256 (0.06 at batch 512), momentum 0.9, weight decay 5e-4, cosine schedule
without warm-up, 800 epochs; projector 3 x 2048 with BN on every layer (output BN without
affine), predictor 2048 -> 512 -> 2048; MoCo v2 views without blur. Variants: ``:tiny``,
``:demo``.
"""

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "simsiam"
    c.augment.recipe = "moco_v2_cifar"
    c.head.proj_layers = 3
    c.head.proj_hidden = 2048
    c.head.proj_dim = 2048
    c.head.last_bn = True
    c.head.pred_hidden = 512
    c.optim.name = "sgd"
    c.optim.base_lr = 0.03
    c.optim.weight_decay = 5e-4
    c.optim.momentum = 0.9
    c.optim.warmup_epochs = 0
    c.data.batch_size = 512
    c.train.epochs = 800
    return variant(c, name)
