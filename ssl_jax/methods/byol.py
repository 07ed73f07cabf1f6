"""BYOL (Grill et al. 2020): online net predicts an EMA target's projection of another view."""

import dataclasses

import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, Method, bn_vars, concat_views
from ssl_jax.methods.networks import SiameseNet
from ssl_jax.train.ema import cosine_ema_momentum, ema_update


def target_subset(params: dict) -> dict:
    """The target network is the online encoder + projector (no predictor)."""
    return {k: v for k, v in params.items() if k != "predictor"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class BYOL(Method):
    """BYOL with a cosine-scheduled EMA target.

    ``aux`` holds ``{'target_params', 'target_batch_stats'}``; the target's BatchNorm runs in
    train mode on the current batch, as in the reference implementation.

    References:
      Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020.
    """

    net: SiameseNet
    total_steps: int
    ema_base: float = 0.996
    ema_final: float = 1.0

    @property
    def target_net(self) -> SiameseNet:
        return self.net.clone(predictor=None)

    def init(self, rng, images):
        views = self.views(jax.random.split(rng, images.shape[0]), images)
        variables = self.net.init(rng, views[0], train=True)
        params = variables["params"]
        stats = variables.get("batch_stats", {})
        # Copies: the target must not share buffers with the online network (donation).
        aux = {
            "target_params": jax.tree.map(jnp.copy, target_subset(params)),
            "target_batch_stats": jax.tree.map(jnp.copy, target_subset(stats)),
        }
        return {"params": params, "batch_stats": stats, "aux": aux}

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n = views[0].shape[0]
        x = concat_views(views[:2])
        (h, z, p), updates = self.net.apply(
            bn_vars(params, batch_stats), x, train=True, mutable=["batch_stats"]
        )
        (_, zt, _), t_updates = self.target_net.apply(
            bn_vars(aux["target_params"], aux["target_batch_stats"]),
            x,
            train=True,
            mutable=["batch_stats"],
        )
        # The target provides regression targets only: no gradient flows into it.
        zt = jax.lax.stop_gradient(zt)
        p1, p2 = p[:n], p[n:]
        t1, t2 = zt[:n], zt[n:]
        loss = losses.byol_symmetric_loss(p1, p2, t1, t2, axis_name=axis_name)
        new_aux = dict(aux, target_batch_stats=t_updates.get("batch_stats", {}))
        out = LossOutput(
            batch_stats=updates.get("batch_stats", {}),
            aux=new_aux,
            metrics={"byol": loss},
            embeddings=(z[:n], z[n:]),
            features=h[:n],
        )
        return loss, out

    def momentum(self, step: jax.Array) -> jax.Array:
        return cosine_ema_momentum(step, self.total_steps, base=self.ema_base, final=self.ema_final)

    def after_update(self, params, aux, step):
        # The target follows the online network with the momentum of the step just taken.
        tau = self.momentum(step - 1)
        target = ema_update(aux["target_params"], target_subset(params), tau)
        return params, dict(aux, target_params=target)

    def step_metrics(self, aux, step):
        return {"ema_momentum": jnp.asarray(self.momentum(step), jnp.float32)}

    def encode(self, params, batch_stats, images):
        return self.net.apply(bn_vars(params, batch_stats), images, method=SiameseNet.features)
