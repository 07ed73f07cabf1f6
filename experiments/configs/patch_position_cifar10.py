"""Relative patch position (Doersch et al. 2015) on CIFAR-10 with a CIFAR-stem ResNet-18.

The paper has no CIFAR recipe. Its geometry is 96-px patches, a 48-px gap (half a patch)
and up to 7 px of jitter on 150k-450k-pixel images; a 3x3 grid of that needs 398 px. At
32 px that 3x3 grid leaves 8-px patches (3 * 8 + 2 * 3 + 2 * 1 = 32), too small to show an
object part: in the CPU benchmark (``experiments/cifar10``, 15 min) the ConvNet trained on
them ended far below its random initialisation (kNN 35.20 / linear 40.90 against 40.15 /
51.26 after 5793 steps). Here the grid is 2x2 (``grid = 2``: any cell and one of the other
three, the label still the step between them) of 9-px patches, a 12-px gap and 1 px of
jitter (2 * 9 + 12 + 2 * 1 = 32), so the two patches are 10 to 14 px apart. The gap is
what made the task teach something: with the two patches closer, the network solves it
from low-level continuity across the gap. Same benchmark, same code, 2x2 grid: 13-px
patches and a 3-px gap 41.33 / 50.61 (4891 steps, 78% pretext accuracy at the end), 10 px
and 8 px 43.73 / 52.21 (51%), 10 px and 10 px 44.21 / 53.31 (46%), these 9 px and 12 px
44.45 / 53.48 (5570 steps, 47%). The patches are resized to 16 px (``input_size``) before
the encoder: at 9 px the ConvNet's last stage would run on 1x1 maps and only ever train the
centre tap of its 3x3 kernels, which the whole 32-px images that kNN and linear probes
encode then see at random. Colour dropping is off: 32-px photographs carry almost no
chromatic aberration, colour is a strong cue on CIFAR-10 and the evaluation encodes colour
images. Views: one crop + flip (``mae_cifar``), then the patch pair. Late fusion: the
ResNet-18 features of both patches concatenated, an MLP (1024 hidden, BN) to 8 classes.
Optimiser as the RotNet config: SGD, momentum 0.9, lr 0.2 x B/256, weight decay 5e-4,
cosine, 200 epochs at batch 256. Variants: ``:tiny``, ``:demo``.
"""

import ml_collections

from ssl_jax.config import base_config, variant


def get_config(name: str = ""):
    c = base_config("cifar10")
    c.method = "patch_position"
    c.augment.recipe = "mae_cifar"
    c.patch_position = ml_collections.ConfigDict(
        {"patch_size": 9, "gap": 12, "jitter": 1, "color_drop": False, "input_size": 16, "grid": 2}
    )
    c.head.proj_hidden = 1024  # the fusion MLP (the paper's fc7 is 4096 wide on AlexNet)
    c.head.proj_layers = 2
    c.optim.name = "sgd"
    c.optim.base_lr = 0.2
    c.optim.weight_decay = 5e-4
    c.optim.momentum = 0.9
    c.optim.warmup_epochs = 0
    c.data.batch_size = 256
    c.train.epochs = 200
    return variant(c, name)
