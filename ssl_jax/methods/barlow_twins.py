"""Barlow Twins (Zbontar et al. 2021): make the views' cross-correlation the identity."""

import dataclasses

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, concat_views
from ssl_jax.methods.common import SiameseMethod, apply_train


@dataclasses.dataclass(frozen=True, kw_only=True)
class BarlowTwins(SiameseMethod):
    """Barlow Twins: ``scale * (sum_i (1 - C_ii)^2 + lambda_ sum_{i!=j} C_ij^2)``.

    ``net`` is backbone + 3-layer projector (8192 wide on ImageNet, 2048 on CIFAR; BN + ReLU
    on the hidden layers, linear output); the cross-correlation ``C`` of the batch-
    standardised projections is computed over the global batch
    (:func:`ssl_jax.losses.barlow_twins_loss`). ``scale`` multiplies the whole loss
    (solo-learn's ``scale_loss``, 0.1 for CIFAR; 1 in the paper). ``aux`` is empty. Logged:
    the loss and its unweighted ``on_diag`` / ``off_diag`` terms.

    Attributes:
      lambda_: weight of the off-diagonal (redundancy) term.
      scale: factor on the whole loss.

    References:
      Zbontar, Jing, Misra, LeCun & Deny, "Barlow Twins: Self-Supervised Learning via
      Redundancy Reduction", ICML 2021 (Alg. 1); da Costa et al., "solo-learn", JMLR 2022
      (CIFAR recipe).
    """

    lambda_: float = 5e-3
    scale: float = 1.0

    def __post_init__(self):
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n = views[0].shape[0]
        (h, z, _), stats = apply_train(self.net, params, batch_stats, concat_views(views[:2]))
        z1, z2 = z[:n], z[n:]
        raw, terms = losses.barlow_twins_loss(z1, z2, lambda_=self.lambda_, axis_name=axis_name)
        loss = self.scale * raw
        out = LossOutput(
            batch_stats=stats,
            aux=aux,
            metrics={"barlow_twins": loss, **terms},
            embeddings=(z1, z2),
            features=h[:n],
        )
        return loss, out
