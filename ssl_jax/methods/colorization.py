"""Colourisation (Zhang et al. 2016): predict the ab colours of an image from its lightness."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax import losses
from ssl_jax.augment.lab import AB_BIN_MARGIN, NUM_AB_BINS, ab_bins, rgb_to_lab
from ssl_jax.methods.base import LossOutput, Method, bn_vars
from ssl_jax.methods.common import apply_train, init_net
from ssl_jax.models.convnet import ConvNet
from ssl_jax.models.resnet import ResNet, conv_init


def lightness_input(rgb: jax.Array) -> jax.Array:
    """The network input of colourisation: CIE L* of sRGB images, centred and scaled.

    Args:
      rgb: float ``[..., H, W, 3]`` sRGB in [0, 1].

    Returns:
      ``[..., H, W, 1]``: ``(L* - 50) / 50``, in [-1, 1] (Zhang et al. subtract 50).
    """
    return (rgb_to_lab(rgb)[..., :1] - 50.0) / 50.0


def ab_targets(rgb: jax.Array, *, downsample: int) -> jax.Array:
    """The colour the network predicts: a*b* of sRGB images on a coarser grid.

    a*b* are averaged over ``downsample x downsample`` blocks (the prediction grid is
    ``1 / downsample`` of the image side, a quarter in the paper: 224 -> 56).

    Args:
      rgb: float ``[B, H, W, 3]`` sRGB in [0, 1]; H and W multiples of ``downsample``.
      downsample: block side.

    Returns:
      ``[B, H / downsample, W / downsample, 2]`` mean a*b* per block.
    """
    b, h, w, _ = rgb.shape
    if downsample < 1 or h % downsample or w % downsample:
        raise ValueError(f"image side {(h, w)} must be a multiple of downsample={downsample}")
    ab = rgb_to_lab(rgb)[..., 1:]
    ab = ab.reshape(b, h // downsample, downsample, w // downsample, downsample, 2)
    return jnp.mean(ab, axis=(2, 4))


class ColorizationHead(nn.Module):
    """Per-position classifier over ab bins on top of a backbone's final feature map.

    ``1x1 conv -> BN -> ReLU`` (reduce the backbone's width at its own resolution), bilinear
    upsampling to the prediction grid, ``3x3 conv -> BN -> ReLU``, then a ``1x1`` conv to
    one logit per bin. A CIFAR ResNet-18 / ConvNet ends at 4x4 for 32-px images and the
    prediction grid is 8x8 (a quarter of the side, as the paper's 56x56 for 224 px); an
    ImageNet ResNet-50 ends at 7x7 and is upsampled to 56x56.

    Attributes:
      num_bins: number of ab classes Q.
      width: channels of the hidden layers.
      bn_axis_name: mapped axis to average BN statistics over (``pmap`` path only).
      bn_momentum: running-statistics momentum.
      dtype: compute dtype; parameters stay float32 and the logits are float32.

    References:
      Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016 (Fig. 2: conv8 upsamples,
      a 1x1 conv gives the 313 bin scores).
    """

    num_bins: int = NUM_AB_BINS
    width: int = 128
    bn_axis_name: str | None = None
    bn_momentum: float = 0.9
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, fmap: jax.Array, out_hw: tuple[int, int], *, train: bool) -> jax.Array:
        """Bin logits ``[B, *out_hw, num_bins]`` (float32) of a feature map ``[B, h, w, C]``."""
        if fmap.ndim != 4:
            raise ValueError(f"feature map must be [B, h, w, C], got shape {fmap.shape}")

        def conv_bn_relu(x, kernel, name):
            pad = kernel // 2
            x = nn.Conv(
                self.width,
                (kernel, kernel),
                padding=((pad, pad), (pad, pad)),
                use_bias=False,
                dtype=self.dtype,
                kernel_init=conv_init,
                name=f"{name}_conv",
            )(x)
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                epsilon=1e-5,
                axis_name=self.bn_axis_name,
                dtype=self.dtype,
                name=f"{name}_bn",
            )(x)
            return nn.relu(x)

        x = conv_bn_relu(fmap.astype(self.dtype), 1, "reduce")
        x = jax.image.resize(x, (x.shape[0], *out_hw, x.shape[-1]), "bilinear")
        x = conv_bn_relu(x, 3, "up")
        logits = nn.Conv(self.num_bins, (1, 1), dtype=self.dtype, name="classifier")(x)
        return logits.astype(jnp.float32)


def _is_map_child(encoder: nn.Module, module: nn.Module, method_name: str) -> bool:
    scope = getattr(module, "scope", None)
    return (
        method_name == "__call__"
        and scope is not None
        and len(scope.path) == len(encoder.scope.path) + 1
        and tuple(scope.path[:-1]) == tuple(encoder.scope.path)
    )


class ColorizationNet(nn.Module):
    """A convolutional backbone on the lightness channel + :class:`ColorizationHead`.

    The backbones return pooled features, so the final feature map is read off while the
    encoder runs (``nn.intercept_methods``): it is the ReLU of the last 4-D output of the
    encoder's direct submodules (the last residual block of a ``ResNet``, whose output is
    already rectified; the last BatchNorm of a ``ConvNet``), the tensor the encoder averages
    into its features (the tests check that its spatial mean is the pooled output).

    Attributes:
      encoder: a ``ResNet`` or ``ConvNet``.
      head: the ab classifier.
      downsample: prediction grid side = image side / ``downsample`` (4 in the paper).
    """

    encoder: nn.Module
    head: ColorizationHead
    downsample: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(features [B, F], feature map [B, h, w, F], bin logits [B, H/d, W/d, Q])``."""
        h_img, w_img = x.shape[1:3]
        if h_img % self.downsample or w_img % self.downsample:
            raise ValueError(f"input side {(h_img, w_img)} is not a multiple of {self.downsample}")
        encoder, maps = self.encoder, []

        def grab(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if getattr(out, "ndim", 0) == 4 and _is_map_child(
                encoder, context.module, context.method_name
            ):
                maps.append(out)
            return out

        with nn.intercept_methods(grab):
            h = encoder(x, train=train)
        if not maps or maps[-1].shape[-1] != h.shape[-1]:
            raise ValueError("ColorizationNet needs a convolutional encoder (ResNet or ConvNet)")
        fmap = nn.relu(maps[-1])
        out_hw = (h_img // self.downsample, w_img // self.downsample)
        return h, fmap, self.head(fmap, out_hw, train=train)

    def features(self, x: jax.Array) -> jax.Array:
        """Eval-mode pooled backbone features ``[B, F]`` of a lightness input."""
        return self.encoder(x, train=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Colorization(Method):
    """Colourisation as classification over quantised ab bins, with class rebalancing.

    Each image's single view (crop + flip, no colour augmentation: colour is the target) is
    de-normalised to sRGB and converted to CIE Lab (:mod:`ssl_jax.augment.lab`). The network
    sees only the lightness, ``(L* - 50) / 50`` as a 1-channel image, and predicts, on a grid
    of ``1 / downsample`` of the image side, a distribution over the Q = 313 ab bins
    (:func:`ssl_jax.augment.lab.ab_bins`). Targets are the block-mean a*b* soft-encoded over
    their 5 nearest bins with a Gaussian of sigma 5 (:func:`ssl_jax.losses.soft_encode_ab`);
    the loss is the rebalanced cross entropy :func:`ssl_jax.losses.colorization_loss`, each
    pixel weighted by ``w`` of its target's most likely bin, with
    ``w ∝ ((1 - lambda) p~ + lambda / Q)^-1`` (lambda = 0.5) and ``p~`` the empirical bin
    prior smoothed with a sigma-5 Gaussian (:func:`ssl_jax.losses.colorization_class_weights`).

    The prior: ``aux['ab_prior']`` is the running mean, over every prediction-grid pixel
    trained on so far, of the one-hot nearest bin of its target: after step ``t`` (counting
    from 0) it is ``prior + (hist_t - prior) / (t + 1)``, ``hist_t`` the global batch's
    histogram, so it is exactly the empirical distribution of the data seen (Zhang et al.
    computed theirs once over ImageNet). It converges to the training set's prior without a
    separate pass over the data and is the same under ``jit`` and ``pmap`` (the histogram
    is averaged over devices). Each step's weights use the prior including that step's
    batch (at step 0: the batch's own histogram).

    :meth:`encode` takes normalised RGB images, as every method's does: it de-normalises
    them with the recipe's statistics, converts to lightness like training, and returns the
    eval-mode pooled backbone features. Training views and evaluation images therefore go
    through the same input transform; colour never reaches the encoder.

    Metrics: ``colorization`` (the rebalanced loss) and ``colorization_top1`` (fraction of
    grid pixels whose most likely predicted bin is the target's nearest bin). Collapse
    monitors get the feature map averaged over the left and the right half of the view
    (the single view has no second augmentation; the halves come free with the forward).

    Attributes:
      net: the network on the lightness channel.
      mean: per-channel mean the views were normalised with (the recipe's).
      std: per-channel standard deviation the views were normalised with.
      num_neighbors: bins each target spreads over (5).
      sigma: soft-encoding and prior-smoothing kernel width in ab units (5).
      lambda_: weight of the uniform distribution in the rebalancing (0.5).
      grid_size: ab bin side (10).
      bin_margin: ``margin`` of :func:`ssl_jax.augment.lab.ab_bins`.

    References:
      Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016 (Sec. 2.1, Eq. 2-4).
    """

    net: ColorizationNet
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_neighbors: int = 5
    sigma: float = 5.0
    lambda_: float = 0.5
    grid_size: float = 10.0
    bin_margin: float = AB_BIN_MARGIN

    def __post_init__(self):
        if not isinstance(self.net.encoder, ResNet | ConvNet):
            raise ValueError(
                "Colorization needs a convolutional encoder (ResNet or ConvNet), got "
                f"{type(self.net.encoder).__name__}"
            )
        q = self.bins.shape[0]
        if self.net.head.num_bins != q:
            raise ValueError(f"head.num_bins={self.net.head.num_bins} but there are {q} ab bins")
        if not 1 <= self.num_neighbors <= q:
            raise ValueError(f"num_neighbors must be in [1, {q}], got {self.num_neighbors}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}")
        if not 0.0 <= self.lambda_ <= 1.0:
            raise ValueError(f"lambda_ must be in [0, 1], got {self.lambda_}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 channels, std > 0; got {self.mean}, {self.std}")

    @property
    def bins(self):
        """``[Q, 2]`` ab bin centres (numpy, computed once)."""
        return ab_bins(grid_size=self.grid_size, margin=self.bin_margin)

    def to_rgb(self, x: jax.Array) -> jax.Array:
        """sRGB in [0, 1] of images normalised with ``mean`` / ``std`` (clipped)."""
        mean = jnp.asarray(self.mean, jnp.float32)
        std = jnp.asarray(self.std, jnp.float32)
        return jnp.clip(x.astype(jnp.float32) * std + mean, 0.0, 1.0)

    def init(self, rng, images):
        view_key, net_key = jax.random.split(rng)
        views = self.views(jax.random.split(view_key, images.shape[0]), images)
        params, stats = init_net(self.net, net_key, lightness_input(self.to_rgb(views[0])))
        q = self.bins.shape[0]
        aux = {"ab_prior": jnp.full((q,), 1.0 / q, jnp.float32)}
        return {"params": params, "batch_stats": stats, "aux": aux}

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        rgb = self.to_rgb(views[0])
        bins = jnp.asarray(self.bins)
        q = bins.shape[0]
        target = losses.soft_encode_ab(
            ab_targets(rgb, downsample=self.net.downsample),
            bins,
            num_neighbors=self.num_neighbors,
            sigma=self.sigma,
        )
        (h, fmap, logits), stats = apply_train(self.net, params, batch_stats, lightness_input(rgb))
        nearest = jnp.argmax(target, axis=-1)
        hist = jnp.zeros((q,), jnp.float32).at[nearest.ravel()].add(1.0) / nearest.size
        if axis_name is not None:
            hist = lax.pmean(hist, axis_name)
        count = (jnp.asarray(step) + 1).astype(jnp.float32)  # batches seen, this one included
        prior = aux["ab_prior"] + (hist - aux["ab_prior"]) / count
        weights = losses.colorization_class_weights(
            prior, lambda_=self.lambda_, bins=bins, sigma=self.sigma
        )
        loss = losses.colorization_loss(logits, target, class_weights=weights, axis_name=axis_name)
        top1 = jnp.mean((jnp.argmax(logits, axis=-1) == nearest).astype(jnp.float32))
        half = fmap.shape[2] // 2
        if half:
            left = jnp.mean(fmap[:, :, :half], axis=(1, 2), dtype=jnp.float32)
            right = jnp.mean(fmap[:, :, half:], axis=(1, 2), dtype=jnp.float32)
        else:
            left = right = h.astype(jnp.float32)
        out = LossOutput(
            batch_stats=stats,
            aux=dict(aux, ab_prior=prior),
            metrics={"colorization": loss, "colorization_top1": top1},
            embeddings=(left, right),
            features=h,
        )
        return loss, out

    def encode(self, params, batch_stats, images):
        x = lightness_input(self.to_rgb(images))
        return self.net.apply(bn_vars(params, batch_stats), x, method=ColorizationNet.features)
