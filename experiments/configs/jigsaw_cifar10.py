"""Jigsaw puzzles (Noroozi & Favaro 2016) on CIFAR-10 with a CIFAR-stem ResNet-18.

The paper has no CIFAR recipe. Its geometry is a 225-px crop cut into 3x3 cells of 75 px
holding one 64-px tile each (random gaps of 0-22 px), every tile normalised on its own,
and 1000 permutations of maximal Hamming distance. At 32 px a 3x3 grid leaves 9-px tiles
in 10-px cells; in the CPU benchmark (``experiments/cifar10``, 15 min) the ConvNet trained
on them ended at its random initialisation (kNN 41.19 / linear 50.23 against 40.15 / 51.26,
1251 steps). Here the grid is 2x2 (``grid = 2``): 16-px cells over the 32-px view holding
14-px tiles (gaps of 0-4 px), all 24 permutations of the 4 tiles (the maximal-Hamming
selection of 24 is all of them); the same benchmark gave 41.99 / 51.71 (2829 steps).
Smaller tiles (wider gaps) made the pretext harder without better features (10-px tiles:
43.47 / 50.67; 8 px: 42.56 / 50.47; ``experiments/cifar10/notes.py``). Tiles are
resized to 16 px (``input_size``) before the encoder (see ``patch_position_cifar10.py``);
per-tile mean/std normalisation over all pixels and channels (``encode`` normalises whole
images the same way; without it, 10-px tiles gave 39.62 / 48.00); no colour-channel shift
(no room for it, and 32-px photographs carry almost no chromatic aberration). Views: one
crop + flip (``mae_cifar``). The context-free network: the ResNet-18 features of the 4 tiles
concatenated, an MLP (1024 hidden, BN) to 24 classes. Optimiser as the RotNet config: SGD,
momentum 0.9, lr 0.2 x B/256, weight decay 5e-4, cosine, 200 epochs at batch 256.
Variants: ``:tiny``, ``:demo``.
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
            "cell_size": 16,
            "tile_size": 14,
            "channel_shift": 0,
            "tile_norm": "tile",
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
