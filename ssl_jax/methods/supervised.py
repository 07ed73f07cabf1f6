"""The supervised baseline: the self-supervised runs' encoder and views, trained on labels.

Benchmarks report it next to every self-supervised method ("the same encoder trained with
labels for the same budget"), so it goes through the same train step, augmentation, online
probe, checkpoints and evaluation as they do; only the objective differs.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput
from ssl_jax.methods.common import SiameseMethod, apply_train, multi_crop_forward, split_views
from ssl_jax.methods.networks import SiameseNet
from ssl_jax.models.heads import LinearClassifier


def _global_mean(x: jax.Array, axis_name: str | None) -> jax.Array:
    # Every device holds the same number of rows, so the mean of the per-device means is the
    # mean over the global batch.
    m = jnp.mean(x)
    return m if axis_name is None else lax.pmean(m, axis_name)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Supervised(SiameseMethod):
    """Encoder + linear classifier trained with softmax cross entropy on the labels.

    Every view the recipe makes (two SimCLR-style crops of each image for the CIFAR-10
    baseline, the augmentation of the self-supervised runs; local crops too, if any) is a
    training example with its image's label: ``loss = mean over views and images of
    CE(W h(view) + b, y)``, with optional label smoothing. The classifier is the network's
    projector (a ``LinearClassifier``); the backbone features ``h`` are what :meth:`encode`
    returns for kNN and the linear probe. The first two views' backbone features feed the
    collapse monitors (with a single view, both are that view, so alignment is 0 by
    construction). ``aux`` is empty. Logged: ``cross_entropy`` and ``train_top1`` (fraction
    of correctly classified views in the batch).

    Attributes:
      net: ``SiameseNet(encoder, projector=LinearClassifier(num_classes))``.
      label_smoothing: alpha in ``[0, 1]``; targets ``(1 - alpha) one_hot + alpha / K``.

    References:
      He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (the supervised
      CIFAR-10 ResNet baseline); Chen et al., "A Simple Framework for Contrastive Learning
      of Visual Representations", ICML 2020 (Table 8 / Fig. 5: supervised baseline with the
      same network and augmentation as the self-supervised one); Szegedy et al.,
      "Rethinking the Inception Architecture", CVPR 2016 (label smoothing).
    """

    label_smoothing: float = 0.0
    needs_labels: bool = True

    def __post_init__(self):
        if not isinstance(self.net.projector, LinearClassifier):
            raise ValueError(
                "Supervised needs net.projector=LinearClassifier(num_classes), got "
                f"{type(self.net.projector).__name__}"
            )
        if self.net.predictor is not None:
            raise ValueError("Supervised takes no predictor head (net.predictor must be None)")
        if not self.needs_labels:
            raise ValueError("Supervised trains on labels: needs_labels must stay True")
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {self.label_smoothing}")

    @property
    def num_classes(self) -> int:
        """Classes of the classifier head (``net.projector``)."""
        return self.net.projector.num_classes

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None, labels=None):
        """Cross entropy of every view against its image's label.

        Args:
          params, batch_stats, aux, rng, step: as in :meth:`Method.loss` (rng and step are
            unused: the objective is deterministic given the views).
          views: list of ``[B, H, W, C]`` view batches (sizes may differ: multi-crop).
          axis_name: mapped axis under ``pmap``, or None.
          labels: ``[B]`` integer classes of the images (this device's rows under ``pmap``).

        Returns:
          ``(loss, LossOutput)``.
        """
        del rng, step
        if labels is None:
            raise ValueError("Supervised.loss needs labels= (the train step passes them)")
        if labels.shape != views[0].shape[:1]:
            raise ValueError(
                f"labels must have shape ({views[0].shape[0]},) like the views' batch, got "
                f"{labels.shape}"
            )
        num_views = len(views)
        (h, logits, _), stats = apply_train(
            self.net, params, batch_stats, list(views), method=multi_crop_forward, train=True
        )
        targets = jnp.tile(labels, num_views)  # rows are view-major: view v is v*B:(v+1)*B
        loss = losses.classification_loss(
            logits, targets, label_smoothing=self.label_smoothing, axis_name=axis_name
        )
        correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
        feats = split_views(h, num_views)
        out = LossOutput(
            batch_stats=stats,
            aux=aux,
            metrics={"cross_entropy": loss, "train_top1": _global_mean(correct, axis_name)},
            embeddings=(feats[0], feats[min(1, num_views - 1)]),
            features=feats[0],
        )
        return loss, out


def supervised(c, num_train_examples: int) -> Supervised:
    """Builder for ``ssl_jax.build_methods.BUILDERS['supervised']`` (config -> method).

    Reads ``data.num_classes``, the encoder and view settings, and the optional
    ``loss.label_smoothing`` (default 0).

    Args:
      c: the run's ``ml_collections.ConfigDict``.
      num_train_examples: unused (no schedule inside the method).

    Returns:
      The :class:`Supervised` method.
    """
    from ssl_jax import build  # build imports the methods package: keep the import lazy

    del num_train_examples
    head = LinearClassifier(c.data.num_classes, dtype=build.dtype(c))
    net = SiameseNet(encoder=build.encoder(c), projector=head)
    return Supervised(
        view_fn=build.view_fn(c),
        net=net,
        label_smoothing=float(c.loss.get("label_smoothing", 0.0)),
    )
