"""Self-supervised methods: each one a ``Method`` (networks, views, objective, aux state).

The shared train step (``ssl_jax.train.step``) is written once against ``Method``;
``ssl_jax.build_methods`` builds each of these from a config.
"""

from ssl_jax.methods.barlow_twins import BarlowTwins
from ssl_jax.methods.base import LossOutput, Method
from ssl_jax.methods.byol import BYOL
from ssl_jax.methods.common import MomentumTargetMethod
from ssl_jax.methods.dino import DINO, teacher_temperature
from ssl_jax.methods.mae import MAE, MAENet
from ssl_jax.methods.moco import MoCoV2, MoCoV3
from ssl_jax.methods.networks import SiameseNet
from ssl_jax.methods.rotation import RotationPrediction
from ssl_jax.methods.simclr import SimCLR
from ssl_jax.methods.simsiam import SimSiam
from ssl_jax.methods.supervised import Supervised
from ssl_jax.methods.swav import PrototypeHead, SwAV
from ssl_jax.methods.vicreg import VICReg

__all__ = [
    "BYOL",
    "DINO",
    "MAE",
    "BarlowTwins",
    "LossOutput",
    "MAENet",
    "Method",
    "MoCoV2",
    "MoCoV3",
    "MomentumTargetMethod",
    "PrototypeHead",
    "RotationPrediction",
    "SiameseNet",
    "SimCLR",
    "SimSiam",
    "Supervised",
    "SwAV",
    "VICReg",
    "teacher_temperature",
]
