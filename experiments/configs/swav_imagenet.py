"""SwAV on ImageNet with ResNet-50 (Caron et al. 2020; facebookresearch/swav README, 800 ep).

Multi-crop 2 x 224 + 6 x 96, projector 2048 -> 128, 3000 prototypes, temperature 0.1,
Sinkhorn eps 0.05 with 3 iterations, no queue at batch 4096, prototypes frozen for the first
epoch (``freeze_prototypes_niters 313``), LARS lr 4.8 at batch 4096 (0.3 x B/256) with 10
warm-up epochs, weight decay 1e-6, 800 epochs.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "swav"
    c.augment.recipe = "swav"
    c.augment.num_local_crops = 6
    c.augment.local_size = 96
    c.head.proj_layers = 2
    c.head.proj_hidden = 2048
    c.head.proj_dim = 128
    c.loss.temperature = 0.1
    c.swav = ml_collections.ConfigDict(
        {
            "num_prototypes": 3000,
            "epsilon": 0.05,
            "sinkhorn_iters": 3,
            "freeze_prototypes_epochs": 1.0,
            "queue_size": 0,
            "queue_start_epochs": 0.0,
        }
    )
    c.optim.name = "lars"
    c.optim.base_lr = 0.3
    c.optim.weight_decay = 1e-6
    c.optim.warmup_epochs = 10
    c.data.batch_size = 4096
    c.train.epochs = 800
    c = variant(c, name)
    if name == "tiny":
        c.augment.num_local_crops = 2
        c.swav.num_prototypes = 32
    return c
