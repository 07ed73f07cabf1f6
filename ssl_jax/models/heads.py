"""Heads on top of an encoder: projector/predictor MLPs, SwAV prototypes, DINO head, probe."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """Projection / prediction head: ``[Dense -> (BN) -> ReLU] * len(hidden_dims) -> Dense``.

    Attributes:
      hidden_dims: widths of the hidden layers (empty = a single linear layer).
      out_dim: output width.
      use_bn: BatchNorm after each hidden layer (SimCLR, BYOL, SimSiam, Barlow, VICReg).
      last_bn: BatchNorm (without affine) on the output (SimSiam, MoCo v3 projector).
      use_bias: biases in the dense layers (off when followed by BN).
      bn_axis_name, dtype: as in the encoders.
    """

    hidden_dims: Sequence[int]
    out_dim: int
    use_bn: bool = True
    last_bn: bool = False
    use_bias: bool = True
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        for i, width in enumerate(self.hidden_dims):
            x = nn.Dense(width, use_bias=self.use_bias and not self.use_bn, dtype=self.dtype,
                         name=f"dense{i}")(x)
            if self.use_bn:
                x = nn.BatchNorm(
                    use_running_average=not train,
                    axis_name=self.bn_axis_name,
                    momentum=0.9,
                    dtype=self.dtype,
                    name=f"bn{i}",
                )(x)
            x = nn.relu(x)
        x = nn.Dense(self.out_dim, use_bias=self.use_bias and not self.last_bn, dtype=self.dtype,
                     name="out")(x)
        if self.last_bn:
            x = nn.BatchNorm(
                use_running_average=not train,
                axis_name=self.bn_axis_name,
                momentum=0.9,
                use_scale=False,
                use_bias=False,
                dtype=self.dtype,
                name="out_bn",
            )(x)
        return x


class Prototypes(nn.Module):
    """SwAV prototypes: a bias-free linear layer whose columns are unit vectors."""

    num_prototypes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        return nn.Dense(self.num_prototypes, use_bias=False, dtype=self.dtype, name="kernel_layer")(z)


def normalize_prototypes(params: dict) -> dict:
    """L2-normalises each prototype (kernel column) of a ``Prototypes`` param subtree."""
    kernel = params["kernel_layer"]["kernel"]
    norm = jnp.linalg.norm(kernel, axis=0, keepdims=True)
    return {**params, "kernel_layer": {"kernel": kernel / jnp.maximum(norm, 1e-12)}}


class DINOHead(nn.Module):
    """DINO projection head: MLP -> L2-normalised bottleneck -> weight-normalised linear layer.

    Attributes:
      out_dim: number of output dimensions (65536 in the paper).
      hidden_dim, bottleneck_dim, num_layers: MLP shape (2048, 256, 3).
      use_bn: BatchNorm in the MLP (off for ViT).
      norm_last_layer: fix the weight-norm gain g to 1 (not trained), as in DINO.

    References:
      Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021.
    """

    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    num_layers: int = 3
    use_bn: bool = False
    norm_last_layer: bool = True
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        init = nn.initializers.truncated_normal(0.02)
        for i in range(self.num_layers - 1):
            x = nn.Dense(self.hidden_dim, kernel_init=init, dtype=self.dtype, name=f"dense{i}")(x)
            if self.use_bn:
                x = nn.BatchNorm(
                    use_running_average=not train, axis_name=self.bn_axis_name, name=f"bn{i}"
                )(x)
            x = nn.gelu(x)
        x = nn.Dense(self.bottleneck_dim, kernel_init=init, dtype=self.dtype, name="bottleneck")(x)
        x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        v = self.param("last_v", init, (self.bottleneck_dim, self.out_dim))
        w = v / jnp.maximum(jnp.linalg.norm(v, axis=0, keepdims=True), 1e-12)
        if not self.norm_last_layer:
            w = w * self.param("last_g", nn.initializers.ones, (1, self.out_dim))
        return x @ w.astype(self.dtype)


class LinearClassifier(nn.Module):
    """A linear layer on (frozen) features: the linear probe and pretext classifiers."""

    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        return nn.Dense(self.num_classes, dtype=self.dtype, name="linear")(x)
