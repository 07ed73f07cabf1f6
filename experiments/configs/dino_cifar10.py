"""DINO on CIFAR-10 with a CIFAR-stem ResNet-18 and multi-crop (2 x 32px + 6 x 16px).

The DINO paper has no CIFAR recipe. Network and optimisation follow solo-learn
(``scripts/pretrain/cifar/dino.yaml``): head 2048 hidden, 256 bottleneck, 4096 outputs,
normalised last layer, no BN in the head, EMA 0.9995 -> 1, LARS lr 0.3 x B/256, weight
decay 1e-6, batch 256, 1000 epochs. Kept from DINO itself: multi-crop (solo-learn's CIFAR
run uses 2 crops only), student temperature 0.1, teacher temperature 0.04 -> 0.07 over 30
epochs, center momentum 0.9, last layer frozen for 1 epoch. Variants: ``:tiny`` (64
outputs, 2 local crops), ``:demo``.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "dino"
    c.augment.recipe = "dino_cifar"
    c.augment.num_local_crops = 6
    c.augment.local_size = 16
    c.dino = ml_collections.ConfigDict(
        {
            "out_dim": 4096,
            "hidden_dim": 2048,
            "bottleneck_dim": 256,
            "use_bn_in_head": False,
            "norm_last_layer": True,
            "student_temp": 0.1,
            "teacher_temp": 0.07,
            "warmup_teacher_temp": 0.04,
            "warmup_teacher_temp_epochs": 30.0,
            "center_momentum": 0.9,
            "freeze_last_layer_epochs": 1.0,
        }
    )
    c.train.ema_base = 0.9995
    c.train.ema_final = 1.0
    c.optim.name = "lars"
    c.optim.base_lr = 0.3
    c.optim.weight_decay = 1e-6
    c.data.batch_size = 256
    c.train.epochs = 1000
    c = variant(c, name)
    if name == "tiny":
        c.augment.num_local_crops = 2
        c.dino.out_dim = 64
        c.dino.hidden_dim = 64
        c.dino.bottleneck_dim = 32
        c.dino.warmup_teacher_temp_epochs = 2.0
        c.dino.freeze_last_layer_epochs = 1.0
        c.train.ema_base = 0.99
    return c
