"""Flax linen encoders and heads. Encoders map NHWC float images to ``[B, num_features]``."""

from ssl_jax.models.convnet import ConvNet
from ssl_jax.models.heads import MLP, DINOHead, LinearClassifier, Prototypes, normalize_prototypes
from ssl_jax.models.resnet import ResNet, resnet18, resnet34, resnet50
from ssl_jax.models.vit import ViT, vit_base, vit_small, vit_tiny

__all__ = [
    "MLP",
    "ConvNet",
    "DINOHead",
    "LinearClassifier",
    "Prototypes",
    "ResNet",
    "ViT",
    "normalize_prototypes",
    "resnet18",
    "resnet34",
    "resnet50",
    "vit_base",
    "vit_small",
    "vit_tiny",
]
