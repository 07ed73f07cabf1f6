"""Heads on top of an encoder: projector / predictor MLPs, SwAV prototypes, the DINO head and
the linear classifier."""

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

_EPS = 1e-12  # torch.nn.functional.normalize's clamp on the norm


def _l2_normalize(x: jax.Array, axis: int) -> jax.Array:
    norm = jnp.linalg.norm(x.astype(jnp.float32), axis=axis, keepdims=True)
    return (x / jnp.maximum(norm, _EPS)).astype(x.dtype)


class MLP(nn.Module):
    """Projector / predictor: ``[Dense -> (BN) -> ReLU] * len(hidden_dims) -> Dense -> (BN)``.

    Attributes:
      hidden_dims: widths of the hidden layers; empty gives a single linear layer.
      out_dim: output width.
      use_bn: BatchNorm after each hidden Dense (SimCLR v2, BYOL, SimSiam, Barlow, VICReg).
      last_bn: BatchNorm on the output (SimSiam and MoCo v3 projectors, Barlow Twins).
      last_bn_affine: learn scale and offset in that last BN (SimSiam / MoCo v3 use none).
      use_bias: biases in Dense layers that are not followed by BN (before BN they are
        redundant and always dropped).
      bn_axis_name: mapped axis to average BN statistics over (``pmap`` path only).
      bn_momentum: running-statistics momentum.
      dtype: compute dtype; parameters stay float32.

    References:
      Chen et al., "A Simple Framework for Contrastive Learning", ICML 2020 (projector);
      Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020 (predictor);
      Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021 (last BN).
    """

    hidden_dims: Sequence[int]
    out_dim: int
    use_bn: bool = True
    last_bn: bool = False
    last_bn_affine: bool = False
    use_bias: bool = True
    bn_axis_name: str | None = None
    bn_momentum: float = 0.9
    dtype: Any = jnp.float32

    def _bn(self, train: bool, name: str, affine: bool = True) -> nn.BatchNorm:
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=1e-5,
            use_scale=affine,
            use_bias=affine,
            axis_name=self.bn_axis_name,
            dtype=self.dtype,
            name=name,
        )

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps features ``[B, D_in]`` to ``[B, out_dim]`` (``train`` drives BatchNorm)."""
        x = x.astype(self.dtype)
        for i, width in enumerate(self.hidden_dims):
            bias = self.use_bias and not self.use_bn
            x = nn.Dense(width, use_bias=bias, dtype=self.dtype, name=f"dense{i + 1}")(x)
            if self.use_bn:
                x = self._bn(train, f"bn{i + 1}")(x)
            x = nn.relu(x)
        bias = self.use_bias and not self.last_bn
        x = nn.Dense(self.out_dim, use_bias=bias, dtype=self.dtype, name="out")(x)
        if self.last_bn:
            x = self._bn(train, "out_bn", affine=self.last_bn_affine)(x)
        return x


class Prototypes(nn.Module):
    """SwAV prototypes: a bias-free linear layer, ``scores = z @ C`` with ``C`` ``[D, K]``.

    Each column of ``params["kernel"]`` is one prototype; keep them unit-norm by applying
    ``normalize_prototypes`` to this module's params after every optimizer step. The inputs
    ``z`` are expected L2-normalised by the caller, so scores are cosine similarities.

    Attributes:
      num_prototypes: number of prototypes K.
      dtype: compute dtype; parameters stay float32.

    References:
      Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments", NeurIPS 2020.
    """

    num_prototypes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """Scores ``[B, K]`` of features ``z [B, D]`` against every prototype."""
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (z.shape[-1], self.num_prototypes)
        )
        return z.astype(self.dtype) @ kernel.astype(self.dtype)


def normalize_prototypes(params: Mapping[str, Any]) -> dict[str, Any]:
    """L2-normalises every prototype (column of ``kernel``) of a ``Prototypes`` param subtree.

    Args:
      params: the ``Prototypes`` module's params, ``{"kernel": [D, K]}``.

    Returns:
      A new subtree with ``kernel[:, k] / ||kernel[:, k]||`` (other entries unchanged).
    """
    if "kernel" not in params:
        raise ValueError(f"expected a Prototypes param subtree with 'kernel', got {list(params)}")
    return {**params, "kernel": _l2_normalize(params["kernel"], axis=0)}


class WeightNormDense(nn.Module):
    """Bias-free weight-normalised linear layer: ``W[:, j] = g_j * v[:, j] / ||v[:, j]||``.

    Attributes:
      features: output width.
      learn_scale: learn the gains ``g`` (init 1); otherwise ``g = 1`` fixed, no parameter.
      dtype: compute dtype.

    References:
      Salimans & Kingma, "Weight Normalization", NeurIPS 2016.
    """

    features: int
    learn_scale: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        v = self.param(
            "kernel", nn.initializers.truncated_normal(0.02), (x.shape[-1], self.features)
        )
        w = _l2_normalize(v, axis=0)
        if self.learn_scale:
            w = w * self.param("scale", nn.initializers.ones, (self.features,))
        return x.astype(self.dtype) @ w.astype(self.dtype)


class DINOHead(nn.Module):
    """DINO head: MLP (GELU) -> L2-normalised bottleneck -> weight-normalised linear layer.

    Attributes:
      out_dim: output dimensions K (65536 in the paper).
      hidden_dim: MLP hidden width (2048).
      bottleneck_dim: bottleneck width (256).
      num_layers: linear layers before the weight-normalised one (3); 1 = a single Dense.
      use_bn: BatchNorm after each hidden layer (off for ViTs).
      norm_last_layer: fix the weight-norm gains ``g`` to 1 (DINO's default); otherwise
        they are learned (``params["last_layer"]["scale"]``, init 1).
      bn_axis_name: mapped axis to average BN statistics over (``pmap`` path only).
      dtype: compute dtype; parameters stay float32.

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
        """Maps features ``[B, D_in]`` to logits ``[B, out_dim]``."""
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        init = nn.initializers.truncated_normal(0.02)  # DINO's trunc_normal_(std=.02), zero bias
        x = x.astype(self.dtype)
        for i in range(self.num_layers - 1):
            dense = nn.Dense(
                self.hidden_dim, kernel_init=init, dtype=self.dtype, name=f"dense{i + 1}"
            )
            x = dense(x)
            if self.use_bn:
                x = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=0.9,
                    epsilon=1e-5,
                    axis_name=self.bn_axis_name,
                    dtype=self.dtype,
                    name=f"bn{i + 1}",
                )(x)
            x = nn.gelu(x, approximate=False)
        x = nn.Dense(self.bottleneck_dim, kernel_init=init, dtype=self.dtype, name="bottleneck")(x)
        x = _l2_normalize(x, axis=-1)
        return WeightNormDense(
            self.out_dim,
            learn_scale=not self.norm_last_layer,
            dtype=self.dtype,
            name="last_layer",
        )(x)


class LinearClassifier(nn.Module):
    """A linear layer on (frozen) features, for the linear probe and pretext classifiers.

    Attributes:
      num_classes: output classes.
      use_bn: an affine-free BatchNorm on the features first (MAE's linear-probe recipe).
      dtype: compute dtype; parameters stay float32.

    References:
      He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022 (BN probe).
    """

    num_classes: int
    use_bn: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``[B, num_classes]`` of features ``[B, D]``."""
        x = x.astype(self.dtype)
        if self.use_bn:
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=0.9,
                epsilon=1e-6,
                use_scale=False,
                use_bias=False,
                dtype=self.dtype,
                name="bn",
            )(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="linear")(x)
