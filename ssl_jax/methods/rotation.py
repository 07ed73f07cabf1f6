"""RotNet (Gidaris et al. 2018): predict which of four rotations an image was given."""

import dataclasses

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput
from ssl_jax.methods.common import SiameseMethod, apply_train
from ssl_jax.models.heads import LinearClassifier


@dataclasses.dataclass(frozen=True, kw_only=True)
class RotationPrediction(SiameseMethod):
    """Rotation prediction: 4-way classification of 0/90/180/270-degree copies of one view.

    ``net`` is backbone + a 4-way ``LinearClassifier`` as its projector. The first view (a
    crop + flip recipe) of each image is turned by 0, 90, 180 and 270 degrees
    (:func:`ssl_jax.losses.rotate_images`; the four copies are adjacent in the batch, as in
    RotNet, and BatchNorm sees all ``4B`` of them) and
    :func:`ssl_jax.losses.rotation_loss` is the mean cross entropy; its accuracy is logged
    as ``rotation_acc``. ``aux`` is empty.

    Collapse monitors get the backbone features of the upright (0 deg) and the 180-degree
    copies: they come free with the forward pass, std and uniformity of the upright
    features measure collapse, and the alignment shows how (non-)invariant to rotation the
    features are (RotNet needs them NOT invariant, so it should stay well above 0). The
    online probe sees the upright features, the ones :meth:`encode` returns.

    References:
      Gidaris, Singh & Komodakis, "Unsupervised Representation Learning by Predicting Image
      Rotations", ICLR 2018; Kolesnikov, Zhai & Beyer, "Revisiting Self-Supervised Visual
      Representation Learning", CVPR 2019 (RotNet with ResNet-50 and a linear head).
    """

    def __post_init__(self):
        head = self.net.projector
        if not isinstance(head, LinearClassifier) or head.num_classes != 4:
            raise ValueError("RotationPrediction needs projector=LinearClassifier(4)")

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n = views[0].shape[0]
        rotated, labels = losses.rotate_images(views[0])
        (h, logits, _), stats = apply_train(self.net, params, batch_stats, rotated)
        loss, acc = losses.rotation_loss(logits, labels, axis_name=axis_name)
        h = h.reshape(n, 4, h.shape[-1])
        out = LossOutput(
            batch_stats=stats,
            aux=aux,
            metrics={"rotation": loss, "rotation_acc": acc},
            embeddings=(h[:, 0], h[:, 2]),
            features=h[:, 0],
        )
        return loss, out
