"""BYOL (Grill et al. 2020): online net predicts an EMA target's projection of another view."""

import dataclasses

import jax

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, concat_views
from ssl_jax.methods.common import MomentumTargetMethod, apply_train
from ssl_jax.methods.networks import SiameseNet


@dataclasses.dataclass(frozen=True, kw_only=True)
class BYOL(MomentumTargetMethod):
    """BYOL with a cosine-scheduled EMA target (encoder + projector, no predictor).

    ``aux`` holds ``{'target_params', 'target_batch_stats'}``; the target's BatchNorm runs in
    train mode on the current batch, as in the reference implementation.

    References:
      Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020.
    """

    @property
    def target_net(self) -> SiameseNet:
        """The target network's module: ``net`` without the predictor."""
        return self.net.clone(predictor=None)

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n = views[0].shape[0]
        x = concat_views(views[:2])
        (h, z, p), stats = apply_train(self.net, params, batch_stats, x)
        (_, zt, _), t_stats = apply_train(
            self.target_net, aux["target_params"], aux["target_batch_stats"], x
        )
        # The target provides regression targets only: no gradient flows into it.
        zt = jax.lax.stop_gradient(zt)
        loss = losses.byol_symmetric_loss(p[:n], p[n:], zt[:n], zt[n:], axis_name=axis_name)
        out = LossOutput(
            batch_stats=stats,
            aux=dict(aux, target_batch_stats=t_stats),
            metrics={"byol": loss},
            embeddings=(z[:n], z[n:]),
            features=h[:n],
        )
        return loss, out
