"""Jigsaw puzzles (Noroozi & Favaro 2016) on ImageNet with ResNet-50.

The paper's geometry: images resized to 256 px, a random 225-px crop cut into 3x3 cells of
75 px, one 64-px tile at a random place in each cell, each colour channel of each tile
shifted by up to 2 px (against chromatic aberration), every tile normalised on its own;
1000 permutations of maximal Hamming distance. The views here are the 224 px every
ImageNet config trains and evaluates at, so the cells are 73 px (a 219-px grid, at a random
place at least 2 px from the border) with the paper's 64-px tiles and 2-px channel shift.
Views: one crop + flip (``mae``). The context-free network: the ResNet-50 features of the 9
tiles concatenated, a 4096-wide hidden layer (fc7), 1000 outputs. Optimiser: the standard
ResNet-50 SGD recipe (momentum 0.9, lr 0.1 x B/256, weight decay 1e-4, 5 warm-up epochs,
cosine) for 100 epochs at batch 256 (the paper: an AlexNet-style CFN, 350k iterations). The
``:tiny`` variant runs at 32 px: 3x3 cells of 10 px holding 9-px tiles.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("imagenet2012")
    c.method = "jigsaw"
    c.augment.recipe = "mae"
    c.jigsaw = ml_collections.ConfigDict(
        {
            "num_permutations": 1000,
            "permutation_criterion": "min",
            "permutation_seed": 0,
            "grid": 3,
            "cell_size": 73,
            "tile_size": 64,
            "placement": "cells",  # or "spaced": gap and jitter instead of cell_size
            "gap": 0,
            "jitter": 0,
            "channel_shift": 2,
            "tile_norm": "tile",
            "input_size": 0,
        }
    )
    c.head.proj_hidden = 4096
    c.head.proj_layers = 2
    c.optim.name = "sgd"
    c.optim.base_lr = 0.1
    c.optim.weight_decay = 1e-4
    c.optim.momentum = 0.9
    c.optim.warmup_epochs = 5
    c.data.batch_size = 256
    c.train.epochs = 100
    c = variant(c, name)
    if name == "tiny":  # 32-px images: the CIFAR-10 config's geometry
        c.jigsaw.update({"cell_size": 10, "tile_size": 9, "channel_shift": 0, "input_size": 16})
    return c
