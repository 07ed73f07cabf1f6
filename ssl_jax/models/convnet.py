"""A small, fast ConvNet encoder for CPU budgets, with the same interface as ``ResNet``."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.models import batch_norm, small_map_conv
from ssl_jax.models.max_pool import max_pool_2x2
from ssl_jax.models.resnet import conv_init

# The ReLU of a pooled block runs after the max-pool, inside it: the two commute (max is
# monotone), values and gradients are the same, and the ReLU and its backward mask then touch
# a quarter of the elements. ``experiments/bench``'s ``relu_after_pool`` before/after flips
# this.
_RELU_AFTER_POOL = True


class ConvNet(nn.Module):
    """``len(widths)`` blocks of 3x3 conv -> BN -> ReLU, a 2x2 max-pool after every block but
    the last (computed as BN -> max-pool -> ReLU, the same function), then global average
    pooling.

    With the default widths (32, 64, 128, 256) the network has 388,896 parameters; a jitted
    forward+backward pass on a 64 x 32x32 batch took ~0.17 s on 2 CPU cores against ~3.6 s
    for a CIFAR-stem ResNet-18 (one measurement on a shared machine, order of magnitude only).

    Attributes:
      widths: output channels of each block.
      dtype: compute dtype; parameters and BN statistics stay float32.
      bn_axis_name: mapped axis to average BN statistics over (``pmap`` path only).
      bn_momentum: running-statistics momentum.

    References:
      Ioffe & Szegedy, "Batch Normalization", ICML 2015 (conv-BN-ReLU building block).
    """

    widths: Sequence[int] = (32, 64, 128, 256)
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None
    bn_momentum: float = 0.9

    @property
    def num_features(self) -> int:
        """Output feature width, known without initialising the module."""
        return int(self.widths[-1])

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool, return_map: bool = False
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Encodes a batch of images.

        Args:
          x: normalised images ``[B, H, W, C]``; H and W at least ``2 ** (len(widths) - 1)``.
          train: use batch statistics in BatchNorm and update the running averages.
          return_map: also return the last block's feature map.

        Returns:
          Features ``[B, num_features]`` in ``dtype``; with ``return_map`` the pair
          ``(features, map [B, h, w, num_features])``.
        """
        if not self.widths:
            raise ValueError("widths must name at least one block")
        if x.ndim != 4:
            raise ValueError(f"ConvNet expects NHWC images [B, H, W, C], got shape {x.shape}")
        min_side = 2 ** (len(self.widths) - 1)
        if min(x.shape[1:3]) < min_side:
            raise ValueError(
                f"ConvNet with {len(self.widths)} blocks needs images of at least "
                f"{min_side}x{min_side}, got {x.shape[1:3]}"
            )
        x = x.astype(self.dtype)
        for i, width in enumerate(self.widths):
            x = nn.Conv(
                width,
                (3, 3),
                padding=((1, 1), (1, 1)),
                use_bias=False,
                dtype=self.dtype,
                kernel_init=conv_init,
                conv_general_dilated=small_map_conv.conv_general_dilated,
                name=f"conv{i + 1}",
            )(x)
            pool = i < len(self.widths) - 1
            relu_after_pool = pool and _RELU_AFTER_POOL
            x = batch_norm.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                epsilon=1e-5,
                axis_name=self.bn_axis_name,
                dtype=self.dtype,
                relu=not relu_after_pool,
                name=f"bn{i + 1}",
            )(x)
            if pool:
                x = max_pool_2x2(x, relu=relu_after_pool)
        pooled = jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(self.dtype)
        return (pooled, x) if return_map else pooled
