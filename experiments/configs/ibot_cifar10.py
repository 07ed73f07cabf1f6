"""iBOT on CIFAR-10 with ViT-S/4 and multi-crop (2 x 32px + 6 x 16px).

The iBOT paper has no CIFAR recipe. Kept from its ViT-S/16 recipe (Zhou et al. 2022;
bytedance/ibot README): one head shared by [CLS] and patch tokens (2048 hidden, 256
bottleneck, learned-gain last layer), student temperature 0.1, teacher [CLS] and patch
temperatures 0.04 -> 0.07 over 30 epochs, both centres with momentum 0.9, loss weights 1 and
1, block-wise masks on each global crop with probability 0.5 at a ratio U(0.1, 0.5)
(``pred_ratio 0 0.3``, ``pred_ratio_var 0 0.2``), EMA 0.996 -> 1, last layer frozen for 1
epoch, AdamW lr 5e-4 x B/256 with 10 warm-up epochs, weight decay 0.04, gradient clipping
3.0. Adapted to 32px: ViT-S/4 as ``mae_cifar10.py``, DINO's CIFAR views with 6 local crops
of 16px (``dino_cifar``), 4096 outputs (as ``dino_cifar10.py``), batch 256, 800 epochs.
Variants: ``:tiny`` (ViT-Ti/8, 64 outputs, 2 local crops), ``:demo`` (ViT-Ti/4 with 4
blocks, a 256-wide head to 1024 outputs, no local crops, EMA from 0.99, schedules of a
1.5-epoch run: temperature warm-up 0.3 epochs, last layer frozen for 0.05; for CPU).
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "ibot"
    c.augment.recipe = "dino_cifar"
    c.augment.num_local_crops = 6
    c.augment.local_size = 16
    c.model.encoder = "vit_small"
    c.model.patch_size = 4
    c.ibot = ml_collections.ConfigDict(
        {
            "out_dim": 4096,
            "patch_out_dim": 4096,  # used only with shared_head=False
            "shared_head": True,
            "hidden_dim": 2048,
            "bottleneck_dim": 256,
            "use_bn_in_head": False,
            "norm_last_layer": False,
            "student_temp": 0.1,
            "teacher_temp": 0.07,
            "warmup_teacher_temp": 0.04,
            "teacher_patch_temp": 0.07,
            "warmup_teacher_patch_temp": 0.04,
            "warmup_teacher_temp_epochs": 30.0,
            "center_momentum": 0.9,
            "lambda_cls": 1.0,
            "lambda_patch": 1.0,
            "mask_prob": 0.5,
            "mask_ratio": 0.3,
            "mask_ratio_var": 0.2,
            "freeze_last_layer_epochs": 1.0,
        }
    )
    c.train.ema_base = 0.996
    c.train.ema_final = 1.0
    c.optim.name = "adamw"
    c.optim.base_lr = 5e-4
    c.optim.weight_decay = 0.04
    c.optim.clip_grad_norm = 3.0
    c.data.batch_size = 256
    c.train.epochs = 800
    c = variant(c, name)
    if name == "tiny":
        c.augment.num_local_crops = 2
        c.ibot.out_dim = c.ibot.patch_out_dim = 64
        c.ibot.hidden_dim = 64
        c.ibot.bottleneck_dim = 32
        c.ibot.warmup_teacher_temp_epochs = 2.0
        c.train.ema_base = 0.99
    if name == "demo":
        # A few CPU minutes: the head runs on every patch token (64 per global crop), so it
        # is narrowed; the teacher must move, and the schedules end, within a short run.
        c.model.encoder = "vit_tiny"
        c.model.depth = 4
        c.augment.num_local_crops = 0
        c.ibot.out_dim = c.ibot.patch_out_dim = 1024
        c.ibot.hidden_dim = 256
        c.ibot.bottleneck_dim = 128
        c.ibot.warmup_teacher_temp_epochs = 0.3
        c.ibot.freeze_last_layer_epochs = 0.05
        c.train.ema_base = 0.99
    return c
