"""SimCLR (Chen et al. 2020): two views, a projection head, NT-Xent over in-batch negatives."""

import dataclasses

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, concat_views
from ssl_jax.methods.common import SiameseMethod, apply_train


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimCLR(SiameseMethod):
    """SimCLR: NT-Xent between the projections of two views, other images as negatives.

    ``net`` is backbone + projector (no predictor); the loss
    (:func:`ssl_jax.losses.nt_xent_loss`) contrasts every projection with the other view of
    its image against the ``2B - 2`` other views of the global batch. ``aux`` is empty.
    Collapse monitors get the two views' projections.

    Attributes:
      temperature: NT-Xent temperature (0.5 in the CIFAR recipe, 0.1 on ImageNet).

    References:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
      ICML 2020.
    """

    temperature: float = 0.5

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n = views[0].shape[0]
        (h, z, _), stats = apply_train(self.net, params, batch_stats, concat_views(views[:2]))
        z1, z2 = z[:n], z[n:]
        loss = losses.nt_xent_loss(z1, z2, temperature=self.temperature, axis_name=axis_name)
        out = LossOutput(
            batch_stats=stats,
            aux=aux,
            metrics={"nt_xent": loss},
            embeddings=(z1, z2),
            features=h[:n],
        )
        return loss, out
