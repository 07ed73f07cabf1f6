"""Late-fusion patch classifiers: the network and method shape shared by relative patch
position (Doersch et al. 2015) and jigsaw puzzles (Noroozi & Favaro 2016).

Both cut ``K`` patches out of each view, run ONE shared encoder on every patch, concatenate
the ``K`` feature vectors and classify the arrangement with an MLP (Doersch's "late fusion"
pair network, Noroozi's context-free network). What differs is how the patches and labels
are made; subclasses of :class:`PatchClassification` say that in :meth:`pretext`.
"""

import abc
import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax import augment, losses
from ssl_jax.methods.base import LossOutput, Method, PyTree, bn_vars
from ssl_jax.methods.common import apply_train, init_net, per_example_keys


class LateFusionNet(nn.Module):
    """Shared encoder per patch, features concatenated, MLP to the pretext classes.

    With ``tile_fc`` each patch's branch ends as in the papers' networks (Doersch et al.'s
    fc6 on AlexNet's conv5 map, Noroozi & Favaro's shared fc6 per tile): a fully connected
    layer over the encoder's unpooled feature map (``Dense -> BN``, then ReLU), whose output
    the fusion MLP reads. Where in a patch a feature lies (what touches its left edge, say)
    is then carried by that layer's weights; without it the fusion MLP reads globally pooled
    features, and the encoder can only carry it in its channels, the same features kNN and
    linear probes read.

    Attributes:
      encoder: the backbone ``(x, *, train) -> [N, F]`` (global pooling, so it takes patches
        and whole images alike); with ``tile_fc`` it must also take ``return_map=True`` and
        return ``(features, map [N, h, w, F])`` (``ConvNet``, ``ResNet``).
      head: the fusion MLP ``([B, K * D], *, train) -> [B, num_classes]``.
      tile_fc: the per-patch layer ``([N, h * w * F], *, train) -> [N, D]`` (an
        :class:`~ssl_jax.models.heads.MLP` without hidden layers and with ``last_bn``), or
        None to fuse the pooled features (``D = F``).
    """

    encoder: nn.Module
    head: nn.Module
    tile_fc: nn.Module | None = None

    def __call__(self, patches: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """``patches [B, K, h, w, C] -> (features [B, K, F], logits [B, num_classes])``.

        ``features`` are the encoder's pooled features of each patch (what :meth:`features`
        gives for whole images), with or without ``tile_fc``. The ``B * K`` patches go
        through the encoder as one batch (BatchNorm statistics over all of them); an
        example's ``K`` patches stay adjacent, so they share a device when the batch is
        sharded.
        """
        if patches.ndim != 5:
            raise ValueError(f"patches must be [B, K, h, w, C], got shape {patches.shape}")
        b, k = patches.shape[:2]
        x = patches.reshape(b * k, *patches.shape[2:])
        if self.tile_fc is None:
            h = fused = self.encoder(x, train=train)
        else:
            h, fmap = self.encoder(x, train=train, return_map=True)
            fused = nn.relu(self.tile_fc(fmap.reshape(b * k, -1), train=train))
        h = h.reshape(b, k, h.shape[-1])
        return h, self.head(fused.reshape(b, -1), train=train)

    def features(self, x: jax.Array) -> jax.Array:
        """Eval-mode backbone features of whole images ``[B, H, W, C] -> [B, F]``."""
        return self.encoder(x, train=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PatchClassification(Method):
    """A method that classifies how patches of a view are arranged, with a late-fusion net.

    The first view of each image (a crop + flip recipe) is turned into ``K`` patches and a
    label by :meth:`pretext`, with one key per image of the global batch (so ``jit`` over a
    Mesh and ``pmap`` cut the same patches); patches are optionally resized to
    ``input_size``; the loss is :func:`ssl_jax.losses.classification_loss` and the accuracy
    is logged as ``<name>_acc``. ``aux`` is empty. :meth:`encode` runs the encoder on whole
    images (after :meth:`preprocess`), which kNN and linear probes use.

    Attributes:
      net: the :class:`LateFusionNet`.
      input_size: side the patches are bilinearly resized to before the encoder, or None to
        feed them at their own size. Lets a small-image encoder see feature maps larger
        than 1x1 in its last layers (32-px CIFAR views give ~8-10 px patches).
    """

    net: LateFusionNet
    input_size: int | None = None

    # Prefix of the logged loss and accuracy (``<name>``, ``<name>_acc``).
    name: ClassVar[str] = "pretext"

    @abc.abstractmethod
    def pretext(self, key: jax.Array, view: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One example's patches and label.

        Args:
          key: PRNG key of this image.
          view: one normalised view ``[S, S, C]``.

        Returns:
          ``(patches [K, h, w, C], label [])``.
        """

    def __post_init__(self):
        if self.input_size is not None and self.input_size < 1:
            raise ValueError(f"input_size must be a positive side or None, got {self.input_size}")

    def check_classes(self, num_classes: int) -> None:
        """Raises ValueError unless the fusion head has ``num_classes`` outputs."""
        head = self.net.head
        got = getattr(head, "out_dim", getattr(head, "num_classes", None))
        if got != num_classes:
            raise ValueError(
                f"{type(self).__name__} needs a head with {num_classes} outputs, got {got}"
            )

    def preprocess(self, images: jax.Array) -> jax.Array:
        """Whole images as the encoder should see them (the identity unless overridden).

        Args:
          images: normalised float ``[B, H, W, C]``.

        Returns:
          The encoder's input for :meth:`encode`.
        """
        return images

    def probe_features(self, h: jax.Array) -> jax.Array:
        """Features ``[B, F]`` for the online probe from the patch features ``[B, K, F]``."""
        return h[:, 0]

    def inputs(self, keys: jax.Array, views: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The network's input for a batch: ``(patches [B, K, h', w', C], labels [B])``.

        Args:
          keys: ``[B]`` PRNG keys, one per image.
          views: ``[B, S, S, C]`` normalised views.

        Returns:
          The patches (resized to ``input_size`` when set) and int32 labels.
        """
        patches, labels = jax.vmap(self.pretext)(keys, views)
        if self.input_size is not None and patches.shape[2:4] != (self.input_size,) * 2:
            size = (self.input_size, self.input_size)
            patches = jax.vmap(jax.vmap(lambda p: augment.resize(p, size)))(patches)
        return patches, labels

    def init(self, rng, images):
        k_view, k_patch, k_net = jax.random.split(rng, 3)
        n = images.shape[0]
        views = self.views(jax.random.split(k_view, n), images)
        patches, _ = self.inputs(jax.random.split(k_patch, n), views[0])
        params, stats = init_net(self.net, k_net, patches)
        return {"params": params, "batch_stats": stats, "aux": {}}

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n = views[0].shape[0]
        patches, labels = self.inputs(per_example_keys(rng, n, axis_name), views[0])
        (h, logits), stats = apply_train(self.net, params, batch_stats, patches)
        loss = losses.classification_loss(logits, labels, axis_name=axis_name)
        correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
        acc = jnp.mean(correct) if axis_name is None else lax.pmean(jnp.mean(correct), axis_name)
        out = LossOutput(
            batch_stats=stats,
            aux=aux,
            metrics={self.name: loss, f"{self.name}_acc": acc},
            embeddings=(h[:, 0], h[:, 1]),
            features=self.probe_features(h),
        )
        return loss, out

    def encode(self, params: PyTree, batch_stats: PyTree, images: jax.Array) -> jax.Array:
        """Eval-mode encoder features ``[B, F]`` of whole images (see :meth:`preprocess`)."""
        return self.net.apply(
            bn_vars(params, batch_stats), self.preprocess(images), method=LateFusionNet.features
        )
