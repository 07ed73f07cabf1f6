"""Self-supervised methods: each one a ``Method`` (networks, views, objective, aux state).

The shared train step (``ssl_jax.train.step``) is written once against ``Method``;
``ssl_jax.build_methods`` builds each of these from a config.
"""

from ssl_jax.methods.barlow_twins import BarlowTwins
from ssl_jax.methods.base import LossOutput, Method
from ssl_jax.methods.byol import BYOL
from ssl_jax.methods.colorization import Colorization, ColorizationHead, ColorizationNet
from ssl_jax.methods.common import MomentumTargetMethod, SiameseMethod
from ssl_jax.methods.dino import DINO, teacher_temperature
from ssl_jax.methods.ibot import IBOT, IBOTNet
from ssl_jax.methods.jigsaw import Jigsaw
from ssl_jax.methods.late_fusion import LateFusionNet, PatchClassification
from ssl_jax.methods.mae import MAE, MAENet
from ssl_jax.methods.maskfeat import MaskFeat, MaskFeatNet
from ssl_jax.methods.moco import MoCoV2, MoCoV3
from ssl_jax.methods.networks import SiameseNet
from ssl_jax.methods.nnclr import NNCLR
from ssl_jax.methods.patch_position import PatchPosition
from ssl_jax.methods.rotation import RotationPrediction
from ssl_jax.methods.simclr import SimCLR
from ssl_jax.methods.simsiam import SimSiam
from ssl_jax.methods.supervised import Supervised
from ssl_jax.methods.swav import PrototypeHead, SwAV
from ssl_jax.methods.vicreg import VICReg

__all__ = [
    "BYOL",
    "DINO",
    "IBOT",
    "MAE",
    "NNCLR",
    "BarlowTwins",
    "Colorization",
    "ColorizationHead",
    "ColorizationNet",
    "IBOTNet",
    "Jigsaw",
    "LateFusionNet",
    "LossOutput",
    "MAENet",
    "MaskFeat",
    "MaskFeatNet",
    "Method",
    "MoCoV2",
    "MoCoV3",
    "MomentumTargetMethod",
    "PatchClassification",
    "PatchPosition",
    "PrototypeHead",
    "RotationPrediction",
    "SiameseMethod",
    "SiameseNet",
    "SimCLR",
    "SimSiam",
    "Supervised",
    "SwAV",
    "VICReg",
    "teacher_temperature",
]
