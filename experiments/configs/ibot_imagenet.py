"""iBOT on ImageNet with ViT-S/16 (Zhou et al. 2022; bytedance/ibot README, ViT-S/16).

Multi-crop 2 x 224 + 10 x 96, one head shared by [CLS] and patch tokens (2048 hidden, 256
bottleneck, 8192 outputs, learned-gain last layer), student temperature 0.1, teacher [CLS]
and patch temperatures 0.04 -> 0.07 over 30 epochs, centre momentum 0.9 for both, loss
weights 1 and 1, block-wise masks on each global crop with probability 0.5 at a ratio
U(0.1, 0.5), EMA 0.996 -> 1 (cosine), last layer frozen for 1 epoch, AdamW lr 5e-4 x B/256
with 10 warm-up epochs, weight decay 0.04, gradient clipping 3.0, batch 1024, 800 epochs.
Not reproduced: the crop scales (the ``dino`` recipe's 0.4-1 / 0.05-0.4 instead of iBOT's
0.25-1 / 0.05-0.25), the 0.04 -> 0.4 weight-decay schedule, per-parameter gradient
clipping, stochastic depth 0.1.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "ibot"
    c.augment.recipe = "dino"
    c.augment.num_local_crops = 10
    c.augment.local_size = 96
    c.model.encoder = "vit_small"
    c.model.patch_size = 16
    c.ibot = ml_collections.ConfigDict(
        {
            "out_dim": 8192,
            "patch_out_dim": 8192,
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
    c.optim.warmup_epochs = 10
    c.data.batch_size = 1024
    c.train.epochs = 800
    c = variant(c, name)
    if name == "tiny":
        c.augment.num_local_crops = 2
        c.ibot.out_dim = c.ibot.patch_out_dim = 64
        c.ibot.hidden_dim = 64
        c.ibot.bottleneck_dim = 32
    return c
