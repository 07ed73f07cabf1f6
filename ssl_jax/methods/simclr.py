"""SimCLR (Chen et al. 2020): two views, a projection head, NT-Xent over in-batch negatives."""

import dataclasses

import jax

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, Method, bn_vars, concat_views
from ssl_jax.methods.networks import SiameseNet


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimCLR(Method):
    """SimCLR.

    References:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
      ICML 2020.
    """

    net: SiameseNet
    temperature: float = 0.5

    def init(self, rng, images):
        views = self.views(jax.random.split(rng, images.shape[0]), images)
        variables = self.net.init(rng, views[0], train=True)
        return {
            "params": variables["params"],
            "batch_stats": variables.get("batch_stats", {}),
            "aux": {},
        }

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n = views[0].shape[0]
        (h, z, _), updates = self.net.apply(
            bn_vars(params, batch_stats),
            concat_views(views[:2]),
            train=True,
            mutable=["batch_stats"],
        )
        z1, z2 = z[:n], z[n:]
        loss = losses.nt_xent_loss(z1, z2, temperature=self.temperature, axis_name=axis_name)
        out = LossOutput(
            batch_stats=updates.get("batch_stats", {}),
            aux=aux,
            metrics={"nt_xent": loss},
            embeddings=(z1, z2),
            features=h[:n],
        )
        return loss, out

    def encode(self, params, batch_stats, images):
        return self.net.apply(bn_vars(params, batch_stats), images, method=SiameseNet.features)
