"""Self-supervised objectives as pure JAX functions.

Every loss takes arrays and keyword-only hyperparameters (paper defaults), validates its
inputs, and works under ``jax.jit``/``jax.grad``. Losses that need the whole batch take
``axis_name``: ``None`` means "the arrays are the global batch" (single device, or
``jax.jit`` over a sharded ``Mesh``); a name means "inside ``shard_map``/``pmap``, gather
across that axis" and gives the same value and gradients.
"""

from ssl_jax.losses._contrastive import info_nce_loss as info_nce_loss
from ssl_jax.losses._contrastive import moco_v3_loss as moco_v3_loss
from ssl_jax.losses._contrastive import nearest_neighbour as nearest_neighbour
from ssl_jax.losses._contrastive import nt_xent_loss as nt_xent_loss
from ssl_jax.losses._contrastive import queue_update as queue_update
from ssl_jax.losses._dino import dino_center_update as dino_center_update
from ssl_jax.losses._dino import dino_loss as dino_loss
from ssl_jax.losses._hog import hog_histograms as hog_histograms
from ssl_jax.losses._hog import hog_normalize as hog_normalize
from ssl_jax.losses._hog import hog_targets as hog_targets
from ssl_jax.losses._hog import image_gradients as image_gradients
from ssl_jax.losses._ibot import ibot_patch_loss as ibot_patch_loss
from ssl_jax.losses._masked import mae_loss as mae_loss
from ssl_jax.losses._masked import patchify as patchify
from ssl_jax.losses._masked import unpatchify as unpatchify
from ssl_jax.losses._nnclr import nnclr_loss as nnclr_loss
from ssl_jax.losses._pretext import classification_loss as classification_loss
from ssl_jax.losses._pretext import colorization_class_weights as colorization_class_weights
from ssl_jax.losses._pretext import colorization_loss as colorization_loss
from ssl_jax.losses._pretext import rotate_images as rotate_images
from ssl_jax.losses._pretext import rotation_loss as rotation_loss
from ssl_jax.losses._pretext import soft_encode_ab as soft_encode_ab
from ssl_jax.losses._redundancy import barlow_twins_loss as barlow_twins_loss
from ssl_jax.losses._redundancy import vicreg_loss as vicreg_loss
from ssl_jax.losses._regression import byol_loss as byol_loss
from ssl_jax.losses._regression import byol_symmetric_loss as byol_symmetric_loss
from ssl_jax.losses._regression import simsiam_loss as simsiam_loss
from ssl_jax.losses._regression import simsiam_symmetric_loss as simsiam_symmetric_loss
from ssl_jax.losses._swav import sinkhorn_knopp as sinkhorn_knopp
from ssl_jax.losses._swav import swav_codes as swav_codes
from ssl_jax.losses._swav import swav_loss as swav_loss

__all__ = [
    "barlow_twins_loss",
    "byol_loss",
    "byol_symmetric_loss",
    "classification_loss",
    "colorization_class_weights",
    "colorization_loss",
    "dino_center_update",
    "dino_loss",
    "hog_histograms",
    "hog_normalize",
    "hog_targets",
    "ibot_patch_loss",
    "image_gradients",
    "info_nce_loss",
    "mae_loss",
    "moco_v3_loss",
    "nearest_neighbour",
    "nnclr_loss",
    "nt_xent_loss",
    "patchify",
    "queue_update",
    "rotate_images",
    "rotation_loss",
    "simsiam_loss",
    "simsiam_symmetric_loss",
    "sinkhorn_knopp",
    "soft_encode_ab",
    "swav_codes",
    "swav_loss",
    "unpatchify",
    "vicreg_loss",
]
