"""SwAV on CIFAR-10 with a CIFAR-stem ResNet-18 and multi-crop (2 x 32px + 6 x 16px).

The SwAV paper has no CIFAR recipe; this is solo-learn's multi-crop one
(``scripts/pretrain/cifar-multicrop/swav.yaml``): projector 2048 -> 128, 3000 prototypes,
temperature 0.1, Sinkhorn eps 0.05 with 3 iterations, a 3840-row queue from epoch 50,
prototypes frozen for 2 epochs, LARS lr 0.6 x B/256, weight decay 1e-6, batch 256,
1000 epochs. Local crops are 16 px here (solo-learn: 18). Variants: ``:tiny`` (32
prototypes, a 32-row queue used from the start, 2 local crops), ``:demo``.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "swav"
    c.augment.recipe = "swav_cifar"
    c.augment.num_local_crops = 6
    c.augment.local_size = 16
    c.head.proj_layers = 2
    c.head.proj_hidden = 2048
    c.head.proj_dim = 128
    c.loss.temperature = 0.1
    c.swav = ml_collections.ConfigDict(
        {
            "num_prototypes": 3000,
            "epsilon": 0.05,
            "sinkhorn_iters": 3,
            "freeze_prototypes_epochs": 2.0,
            "queue_size": 3840,
            "queue_start_epochs": 50.0,
        }
    )
    c.optim.name = "lars"
    c.optim.base_lr = 0.6
    c.optim.weight_decay = 1e-6
    c.data.batch_size = 256
    c.train.epochs = 1000
    c = variant(c, name)
    if name == "tiny":
        c.augment.num_local_crops = 2
        c.swav.num_prototypes = 32
        c.swav.queue_size = 32
        c.swav.queue_start_epochs = 0.0
        c.swav.freeze_prototypes_epochs = 1.0
    return c
