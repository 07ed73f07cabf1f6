"""SimSiam (Chen & He 2021): one network predicts its own stop-gradient projection."""

import dataclasses

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, concat_views
from ssl_jax.methods.common import SiameseMethod, apply_train


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimSiam(SiameseMethod):
    """SimSiam: ``0.5 D(p1, sg(z2)) + 0.5 D(p2, sg(z1))`` with ``D`` the negative cosine.

    ``net`` is backbone + 3-layer projector (hidden and output 2048, BatchNorm on every
    layer, the output BN without affine) + 2-layer bottleneck predictor (hidden 512, BN on
    the hidden layer). No target network: both branches share the parameters and the
    stop-gradient inside :func:`ssl_jax.losses.simsiam_symmetric_loss` is what prevents
    collapse. ``aux`` is empty. Collapse monitors get ``(z1, z2)``; the SimSiam paper's
    collapse indicator (std of normalised ``z``) is the step's ``embedding_std``.

    References:
      Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021 (Alg. 1,
      Sec. 3 "Baseline settings").
    """

    def __post_init__(self):
        if self.net.predictor is None or self.net.projector is None:
            raise ValueError("SimSiam needs a projector and a predictor")

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n = views[0].shape[0]
        (h, z, p), stats = apply_train(self.net, params, batch_stats, concat_views(views[:2]))
        z1, z2 = z[:n], z[n:]
        loss = losses.simsiam_symmetric_loss(p[:n], p[n:], z1, z2, axis_name=axis_name)
        out = LossOutput(
            batch_stats=stats,
            aux=aux,
            metrics={"simsiam": loss},
            embeddings=(z1, z2),
            features=h[:n],
        )
        return loss, out
