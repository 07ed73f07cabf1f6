"""VICReg (Bardes et al. 2022): invariance, variance and covariance terms on two views."""

import dataclasses

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, concat_views
from ssl_jax.methods.common import SiameseMethod, apply_train


@dataclasses.dataclass(frozen=True, kw_only=True)
class VICReg(SiameseMethod):
    """VICReg: ``sim_coeff * inv + std_coeff * var + cov_coeff * cov`` (25 / 25 / 1).

    ``net`` is backbone + 3-layer expander (8192 wide on ImageNet, 2048 on CIFAR; BN + ReLU
    on the hidden layers, linear output); the variance and covariance terms use statistics
    of the global batch (:func:`ssl_jax.losses.vicreg_loss`). ``aux`` is empty. Logged: the
    loss and its unweighted ``invariance`` / ``variance`` / ``covariance`` terms.

    Attributes:
      sim_coeff: weight of the invariance (MSE) term.
      std_coeff: weight of the variance (hinge on the per-dimension std) term.
      cov_coeff: weight of the covariance term.

    References:
      Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
      Self-Supervised Learning", ICLR 2022 (Alg. 1; official ``main_vicreg.py``).
    """

    sim_coeff: float = 25.0
    std_coeff: float = 25.0
    cov_coeff: float = 1.0

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n = views[0].shape[0]
        (h, z, _), stats = apply_train(self.net, params, batch_stats, concat_views(views[:2]))
        z1, z2 = z[:n], z[n:]
        loss, terms = losses.vicreg_loss(
            z1,
            z2,
            sim_coeff=self.sim_coeff,
            std_coeff=self.std_coeff,
            cov_coeff=self.cov_coeff,
            axis_name=axis_name,
        )
        out = LossOutput(
            batch_stats=stats,
            aux=aux,
            metrics={"vicreg": loss, **terms},
            embeddings=(z1, z2),
            features=h[:n],
        )
        return loss, out
