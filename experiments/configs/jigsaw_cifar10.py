"""Jigsaw puzzles (Noroozi & Favaro 2016) on CIFAR-10 with a CIFAR-stem ResNet-18.

The paper has no CIFAR recipe. Its geometry is a 225-px crop cut into 3x3 cells of 75 px
holding one 64-px tile each (random gaps of 0-22 px), every tile normalised on its own,
and 1000 permutations of maximal Hamming distance. At 32 px a 3x3 grid leaves 9-px tiles
in 10-px cells; in the CPU benchmark (``experiments/cifar10``, 15 min) the ConvNet trained
on them ended at its random initialisation (kNN 41.19 / linear 50.23 against 40.15 / 51.26,
1251 steps). Here the grid is 2x2 (``grid = 2``, all 24 permutations of the 4 tiles: the
maximal-Hamming selection of 24 is all of them) of 9-px tiles spaced as the patch-position
config's patches (``placement = 'spaced'``; ``patch_position_cifar10.py``): a 12-px gap and
1 px of jitter per tile (2 * 9 + 12 + 2 = 32), so neighbouring tiles are 10 to 14 px apart
and no puzzle is solved from continuity across a border. Tiles are not normalised
(``tile_norm = 'none'``, so ``encode`` reads images as every other method does): with the
gap, the tiles' low-level statistics no longer give the answer away. The same benchmark
gave 43.83 / 54.42 (1198 steps, on a slower machine than the other rows). Before, with
tiles in 16-px cells (``placement = 'cells'``: random gaps from 0 px) and per-tile
normalisation, the pretext was solved from low-level continuity: 14-px tiles 41.99 / 51.71
(2829 steps), 10-px tiles 43.47 / 50.67, 10-px tiles unnormalised 39.62 / 48.00; spaced
tiles normalised gave 42.00 / 51.03 (``experiments/cifar10/notes.py``). Tiles are resized
to 16 px (``input_size``) before the encoder (see ``patch_position_cifar10.py``); no
colour-channel shift (no room for it, and 32-px photographs carry almost no chromatic
aberration). Views: one crop + flip (``mae_cifar``). The context-free network: the
ResNet-18 features of the 4 tiles concatenated, an MLP (1024 hidden, BN) to 24 classes.
Optimiser as the RotNet config: SGD, momentum 0.9, lr 0.2 x B/256, weight decay 5e-4,
cosine, 200 epochs at batch 256. Variants: ``:tiny``, ``:demo``.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "jigsaw"
    c.augment.recipe = "mae_cifar"
    c.jigsaw = ml_collections.ConfigDict(
        {
            "num_permutations": 24,
            "permutation_criterion": "min",
            "permutation_seed": 0,
            "grid": 2,
            "placement": "spaced",  # or "cells": the paper's cells of cell_size
            "cell_size": 16,
            "tile_size": 9,
            "gap": 12,
            "jitter": 1,
            "channel_shift": 0,
            "tile_norm": "none",
            "input_size": 16,
        }
    )
    c.head.proj_hidden = 1024  # the fusion MLP (the paper's fc7 is 4096 wide)
    c.head.proj_layers = 2
    c.optim.name = "sgd"
    c.optim.base_lr = 0.2
    c.optim.weight_decay = 5e-4
    c.optim.momentum = 0.9
    c.optim.warmup_epochs = 0
    c.data.batch_size = 256
    c.train.epochs = 200
    return variant(c, name)
