"""ResNet-18/34/50 encoders (torchvision layout, v1.5 bottleneck) in NHWC Flax linen.

The network ends at global average pooling: ``ResNet(...)(x, train=...)`` maps images
``[B, H, W, 3]`` to features ``[B, num_features]``; heads are separate modules.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax.models import batch_norm, small_map_conv

BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar")

# He et al. initialisation as torchvision uses it (kaiming_normal_, fan_out, relu).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _pad(kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
    # Symmetric padding as in torchvision; Flax "SAME" pads (0, 1) at stride 2, which would
    # shift every strided feature map by one pixel relative to the reference networks.
    return ((kernel // 2, kernel // 2), (kernel // 2, kernel // 2))


class ResidualBlock(nn.Module):
    """A basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1; 4x expansion) residual block.

    The stride sits on the first 3x3 convolution (ResNet v1.5, as in torchvision). A 1x1
    strided projection with BatchNorm replaces the identity shortcut when shapes differ.

    Attributes:
      filters: width of the block (its output is ``4 * filters`` for bottleneck blocks).
      strides: spatial stride of the block.
      bottleneck: bottleneck instead of basic block.
      norm: ``batch_norm.BatchNorm`` partial with the training mode and BN settings bound
        (``relu=True`` fuses the ReLU that follows).
      conv: ``nn.Conv`` partial with dtype and init bound.
      zero_init_residual: the last BN of the residual branch starts with gamma = 0, so the
        block starts as the identity (Goyal et al. 2017; used by SimCLR and BYOL).
    """

    filters: int
    strides: int
    bottleneck: bool
    norm: Callable[..., nn.Module]
    conv: Callable[..., nn.Module]
    zero_init_residual: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        last_gamma = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        s = (self.strides, self.strides)
        if self.bottleneck:
            out_ch = 4 * self.filters
            y = self.conv(self.filters, (1, 1), name="conv1")(x)
            y = self.norm(relu=True, name="bn1")(y)
            y = self.conv(self.filters, (3, 3), strides=s, padding=_pad(3), name="conv2")(y)
            y = self.norm(relu=True, name="bn2")(y)
            y = self.conv(out_ch, (1, 1), name="conv3")(y)
        else:
            out_ch = self.filters
            y = self.conv(self.filters, (3, 3), strides=s, padding=_pad(3), name="conv1")(x)
            y = self.norm(relu=True, name="bn1")(y)
            y = self.conv(self.filters, (3, 3), padding=_pad(3), name="conv2")(y)
        shortcut = x
        if self.strides != 1 or x.shape[-1] != out_ch:
            shortcut = self.conv(out_ch, (1, 1), strides=s, name="proj_conv")(x)
            shortcut = self.norm(name="proj_bn")(shortcut)
        # The branch's last BN, the shortcut's addition and the ReLU in one pass.
        last = self.norm(scale_init=last_gamma, relu=True, name="bn3" if self.bottleneck else "bn2")
        return last(y, residual=shortcut)


class ResNet(nn.Module):
    """ResNet backbone returning global-average-pooled features ``[B, num_features]``.

    Attributes:
      stage_sizes: residual blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
      block: ``'basic'`` (ResNet-18/34) or ``'bottleneck'`` (ResNet-50 and deeper).
      width_multiplier: scales every width (SimCLR's ResNet-50 (2x), (4x)).
      stem: ``'imagenet'`` (7x7/2 conv, BN, ReLU, 3x3/2 max-pool: 224 -> 56) or ``'cifar'``
        (3x3/1 conv, BN, ReLU, no pool: 32 -> 32), as in SimCLR's CIFAR experiments.
      zero_init_residual: start each block's last BN at gamma = 0 (SimCLR, BYOL).
      dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters and BN statistics stay float32.
      bn_axis_name: mapped axis to average BN statistics over, for the ``pmap`` path only;
        under ``jit`` over a sharded batch plain BN is already global.
      bn_momentum: running-statistics momentum (``new = m * old + (1 - m) * batch``).

    References:
      He et al., "Deep Residual Learning for Image Recognition", CVPR 2016;
      Goyal et al., "Accurate, Large Minibatch SGD", 2017 (zero-init residual gamma).
    """

    stage_sizes: Sequence[int]
    block: str = "basic"
    width_multiplier: int = 1
    stem: str = "imagenet"
    zero_init_residual: bool = True
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None
    bn_momentum: float = 0.9

    @property
    def num_features(self) -> int:
        """Output feature width, known without initialising the module."""
        expansion = 4 if self.block == "bottleneck" else 1
        return 64 * self.width_multiplier * 2 ** (len(self.stage_sizes) - 1) * expansion

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool, return_map: bool = False
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Encodes a batch of images.

        Args:
          x: normalised images ``[B, H, W, C]``.
          train: use batch statistics in BatchNorm and update the running averages
            (the ``batch_stats`` collection must then be mutable).
          return_map: also return the last stage's feature map.

        Returns:
          Global-average-pooled features ``[B, num_features]`` in ``dtype``; with
          ``return_map`` the pair ``(features, map [B, h, w, num_features])``.
        """
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if not self.stage_sizes:
            raise ValueError("stage_sizes must name at least one stage")
        if x.ndim != 4:
            raise ValueError(f"ResNet expects NHWC images [B, H, W, C], got shape {x.shape}")
        conv = functools.partial(
            nn.Conv,
            use_bias=False,
            padding="VALID",
            dtype=self.dtype,
            kernel_init=conv_init,
            conv_general_dilated=small_map_conv.conv_general_dilated,
        )
        norm = functools.partial(
            batch_norm.BatchNorm,
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=1e-5,
            axis_name=self.bn_axis_name,
            dtype=self.dtype,
        )
        width = 64 * self.width_multiplier
        x = x.astype(self.dtype)
        if self.stem == "imagenet":
            x = conv(width, (7, 7), strides=(2, 2), padding=_pad(7), name="stem_conv")(x)
            x = norm(relu=True, name="stem_bn")(x)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=_pad(3))
        else:
            x = conv(width, (3, 3), padding=_pad(3), name="stem_conv")(x)
            x = norm(relu=True, name="stem_bn")(x)
        for i, n_blocks in enumerate(self.stage_sizes):
            for j in range(n_blocks):
                x = ResidualBlock(
                    filters=width * 2**i,
                    strides=2 if i > 0 and j == 0 else 1,
                    bottleneck=self.block == "bottleneck",
                    norm=norm,
                    conv=conv,
                    zero_init_residual=self.zero_init_residual,
                    name=f"stage{i + 1}_block{j + 1}",
                )(x)
        # Pool in float32: a bf16 sum over 7x7 (or 32x32) positions loses precision.
        pooled = jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(self.dtype)
        return (pooled, x) if return_map else pooled


def resnet18(**kw: Any) -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2), 512 features, 11.18M parameters (ImageNet stem).

    Args:
      **kw: other ``ResNet`` fields (``stem``, ``width_multiplier``, ``dtype``,
        ``bn_axis_name`` ...).

    Returns:
      The (unbound) ``ResNet`` module.
    """
    return ResNet(stage_sizes=(2, 2, 2, 2), block="basic", **kw)


def resnet34(**kw: Any) -> ResNet:
    """ResNet-34: basic blocks (3, 4, 6, 3), 512 features, 21.28M parameters (ImageNet stem).

    Args:
      **kw: other ``ResNet`` fields (``stem``, ``width_multiplier``, ``dtype``,
        ``bn_axis_name`` ...).

    Returns:
      The (unbound) ``ResNet`` module.
    """
    return ResNet(stage_sizes=(3, 4, 6, 3), block="basic", **kw)


def resnet50(**kw: Any) -> ResNet:
    """ResNet-50: bottleneck blocks (3, 4, 6, 3), 2048 features, 23.51M parameters.

    Args:
      **kw: other ``ResNet`` fields (``stem``, ``width_multiplier``, ``dtype``,
        ``bn_axis_name`` ...).

    Returns:
      The (unbound) ``ResNet`` module.
    """
    return ResNet(stage_sizes=(3, 4, 6, 3), block="bottleneck", **kw)
