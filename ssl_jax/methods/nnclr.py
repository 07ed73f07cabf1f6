"""NNCLR (Dwibedi et al. 2021): contrastive learning with nearest-neighbour positives."""

import dataclasses

import jax
import jax.numpy as jnp

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, concat_views
from ssl_jax.methods.common import SiameseMethod, apply_train, init_with_queue, l2_normalize


@dataclasses.dataclass(frozen=True, kw_only=True)
class NNCLR(SiameseMethod):
    """NNCLR: the positive of each view is its nearest neighbour in a support set.

    ``net`` is backbone + projector (the paper's 3-layer MLP with BatchNorm, output ``z``) +
    predictor (2-layer MLP, output ``p``). Both views go through it once. Each view's
    L2-normalised projection looks up its nearest neighbour (cosine) in the support set ``Q``
    (:func:`ssl_jax.losses.nearest_neighbour`, no gradient), and
    :func:`ssl_jax.losses.nnclr_loss` contrasts it with the other view's predictions over
    the global batch: ``loss = (ctr(NN(z1), p2) + ctr(NN(z2), p1)) / 2``.

    The support set is a FIFO queue of past projections, MoCo's queue: ``aux`` holds
    ``{'queue' [K, D], 'ptr'}``, initialised to random unit vectors (as solo-learn's NNCLR and
    the official MoCo code) and a zero pointer. After the loss, this batch's L2-normalised
    view-1 projections (stop-gradient) replace the oldest rows with
    :func:`ssl_jax.losses.queue_update`: under ``jit`` over a ``Mesh`` that is the global
    batch in order; under ``pmap`` every device gathers all rows first, so all devices keep
    the same queue. The lookup reads the queue from before this step's update, so a view is
    never its own neighbour. Besides the loss, ``nn_cosine`` logs the mean cosine between the
    view-1 projections and their neighbours (how close the borrowed positives are).

    Collapse monitors get the projections of the two views.

    Attributes:
      queue_size: ``K``, support-set rows (98,304 in the paper, 65,536 in solo-learn's CIFAR
        recipe); at least the global batch.
      temperature: tau (0.1 in the paper).

    References:
      Dwibedi, Aytar, Tompson, Sermanet & Zisserman, "With a Little Help from My Friends:
      Nearest-Neighbor Contrastive Learning of Visual Representations", ICCV 2021 (Sec. 3,
      Eq. 2); solo-learn ``solo/methods/nnclr.py`` (queue init, symmetric loss).
    """

    queue_size: int = 98304
    temperature: float = 0.1

    def __post_init__(self):
        if self.net.projector is None or self.net.predictor is None:
            raise ValueError("NNCLR needs a projector and a predictor head")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be positive, got {self.queue_size}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    def init(self, rng, images):
        params, stats, aux = init_with_queue(self, rng, images, self.queue_size)
        return {"params": params, "batch_stats": stats, "aux": aux}

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n = views[0].shape[0]
        (h, z, p), stats = apply_train(self.net, params, batch_stats, concat_views(views[:2]))
        z = l2_normalize(z)
        z1, z2, p1, p2 = z[:n], z[n:], p[:n], p[n:]
        queue = aux["queue"]
        nn1 = losses.nearest_neighbour(queue, z1)
        nn2 = losses.nearest_neighbour(queue, z2)
        loss = losses.nnclr_loss(
            nn1, nn2, p1, p2, temperature=self.temperature, axis_name=axis_name
        )
        new_queue, new_ptr = losses.queue_update(queue, aux["ptr"], z1, axis_name=axis_name)
        # stop_gradient: a monitor of how close the borrowed positives are, not an objective.
        nn_cosine = jnp.mean(jnp.sum(jax.lax.stop_gradient(z1) * l2_normalize(nn1), axis=-1))
        out = LossOutput(
            batch_stats=stats,
            aux=dict(aux, queue=new_queue, ptr=new_ptr),
            metrics={"nnclr": loss, "nn_cosine": nn_cosine},
            embeddings=(z1, z2),
            features=h[:n],
        )
        return loss, out
