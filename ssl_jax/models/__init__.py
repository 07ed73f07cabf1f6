"""Flax linen encoders and heads.

Encoders map NHWC float images to ``[B, num_features]`` (``num_features`` is a property, known
before init, so heads can be sized from it) and take ``(x, *, train)``.
"""

from ssl_jax.models.batch_norm import BatchNorm
from ssl_jax.models.convnet import ConvNet
from ssl_jax.models.heads import (
    MLP,
    DINOHead,
    LinearClassifier,
    Prototypes,
    WeightNormDense,
    normalize_prototypes,
)
from ssl_jax.models.masking import (
    MAEDecoder,
    num_kept,
    random_masking,
    unshuffle_tokens,
)
from ssl_jax.models.resnet import ResidualBlock, ResNet, resnet18, resnet34, resnet50
from ssl_jax.models.vit import (
    Attention,
    TransformerBlock,
    ViT,
    sincos_pos_embed,
    vit_base,
    vit_small,
    vit_tiny,
)

__all__ = [
    "MLP",
    "Attention",
    "BatchNorm",
    "ConvNet",
    "DINOHead",
    "LinearClassifier",
    "MAEDecoder",
    "Prototypes",
    "ResNet",
    "ResidualBlock",
    "TransformerBlock",
    "ViT",
    "WeightNormDense",
    "normalize_prototypes",
    "num_kept",
    "random_masking",
    "resnet18",
    "resnet34",
    "resnet50",
    "sincos_pos_embed",
    "unshuffle_tokens",
    "vit_base",
    "vit_small",
    "vit_tiny",
]
