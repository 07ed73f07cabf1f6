"""MoCo v2 (queue of momentum-encoded keys) and MoCo v3 (in-batch keys, predictor)."""

import dataclasses

import jax

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, concat_views
from ssl_jax.methods.common import (
    MomentumTargetMethod,
    apply_train,
    init_with_queue,
    l2_normalize,
)
from ssl_jax.methods.networks import SiameseNet


@dataclasses.dataclass(frozen=True, kw_only=True)
class MoCoV2(MomentumTargetMethod):
    """MoCo v2: InfoNCE of a query against its momentum-encoded key and a queue of old keys.

    The query encoder is ``net`` (backbone + 2-layer MLP head, no BatchNorm in the head as in
    MoCo v2); the key encoder is its EMA with a constant momentum (``ema_base ==
    ema_final``: 0.999 on ImageNet, 0.99 in the official CIFAR-10 demo). ``aux`` holds
    ``{'target_params', 'target_batch_stats', 'queue', 'ptr'}``: the queue ``[K, D]`` of
    L2-normalised keys (initialised to random unit vectors, as the official code) and the
    next row to write. After the loss, this batch's keys (stop-gradient) replace the oldest
    rows with :func:`ssl_jax.losses.queue_update`, so the pointer advances by the number of
    keys mod ``K``.

    ``symmetric=False`` is MoCo v2: query = view 1 through ``net``, key = view 2 through the
    target, ``B`` keys enqueued. ``symmetric=True`` is the official CIFAR-10 demo's variant:
    both directions, ``loss = L(q1, k2) + L(q2, k1)``, keys ``[k1; k2]`` (``2B`` rows)
    enqueued.

    BatchNorm: under ``jit`` over a sharded ``Mesh`` BatchNorm statistics are over the global
    batch, so there is no per-device "shuffling BN"; the query and key encoders' BN see the
    same global batch statistics, which is what shuffling BN approximates (MoCo Sec. 3.3).
    Under ``pmap`` with ``bn_axis_name`` set, the same holds (synchronised BN).

    Collapse monitors get ``(q1, q2)`` (online projections of both views) when symmetric,
    else ``(q1, k2)``: the query and the key it is pulled towards.

    Attributes:
      queue_size: ``K``, keys kept in the queue (65536 on ImageNet, 4096 in the CIFAR demo).
      temperature: InfoNCE temperature (0.2 in MoCo v2, 0.1 in the CIFAR demo).
      symmetric: both directions and ``2B`` enqueued keys (see above).

    References:
      He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR
      2020; Chen, Fan, Girshick & He, "Improved Baselines with Momentum Contrastive
      Learning", arXiv:2003.04297, 2020; facebookresearch/moco ``colab/moco_cifar10_demo``.
    """

    queue_size: int = 65536
    temperature: float = 0.2
    symmetric: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.net.predictor is not None:
            raise ValueError("MoCo v2 has no predictor; build net with predictor=None")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be positive, got {self.queue_size}")

    @property
    def target_net(self) -> SiameseNet:
        """The key encoder's module: the online ``net`` itself (MoCo v2 has no predictor)."""
        return self.net

    def init(self, rng, images):
        params, stats, queue = init_with_queue(self, rng, images, self.queue_size)
        aux = {**self.init_target(params, stats), **queue}
        return {"params": params, "batch_stats": stats, "aux": aux}

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n = views[0].shape[0]
        target = (aux["target_params"], aux["target_batch_stats"])
        queue = aux["queue"]
        if self.symmetric:
            x = concat_views(views[:2])
            (h, q, _), stats = apply_train(self.net, params, batch_stats, x)
            (_, k, _), t_stats = apply_train(self.target_net, *target, x)
            q1, q2 = q[:n], q[n:]
        else:
            (h, q1, _), stats = apply_train(self.net, params, batch_stats, views[0])
            (_, k, _), t_stats = apply_train(self.target_net, *target, views[1])
        # stop_gradient: keys come from the momentum encoder, which gradients never train.
        k = l2_normalize(jax.lax.stop_gradient(k))
        kw = dict(temperature=self.temperature, axis_name=axis_name)
        if self.symmetric:
            k1, k2 = k[:n], k[n:]
            loss = losses.info_nce_loss(q1, k2, queue, **kw) + losses.info_nce_loss(
                q2, k1, queue, **kw
            )
            # One view at a time, so that under pmap the rows land in global-batch order.
            enqueue, embeddings = (k1, k2), (q1, q2)
        else:
            loss = losses.info_nce_loss(q1, k, queue, **kw)
            enqueue, embeddings = (k,), (q1, k)
        new_queue, new_ptr = queue, aux["ptr"]
        for keys in enqueue:
            new_queue, new_ptr = losses.queue_update(new_queue, new_ptr, keys, axis_name=axis_name)
        new_aux = dict(aux, target_batch_stats=t_stats, queue=new_queue, ptr=new_ptr)
        out = LossOutput(
            batch_stats=stats,
            aux=new_aux,
            metrics={"info_nce": loss},
            embeddings=embeddings,
            features=h[:n],
        )
        return loss, out


@dataclasses.dataclass(frozen=True, kw_only=True)
class MoCoV3(MomentumTargetMethod):
    """MoCo v3: symmetric contrastive loss of predictor outputs against in-batch momentum keys.

    ``net`` is backbone + 3-layer projector (hidden 4096, output 256, BatchNorm without
    affine on the output) + 2-layer predictor (hidden 4096); the momentum encoder is the EMA
    of backbone + projector with a cosine momentum schedule (0.99 -> 1). Both views go
    through both networks; ``loss = ctr(q1, k2) + ctr(q2, k1)`` with the keys
    stop-gradient (:func:`ssl_jax.losses.moco_v3_loss`, which includes the official
    ``2 * temperature`` factor). ``aux`` holds ``{'target_params', 'target_batch_stats'}``.
    Collapse monitors get the online projections of the two views.

    Attributes:
      temperature: contrastive temperature (1.0 for ResNet-50, 0.2 for ViT in the paper).

    References:
      Chen, Xie & He, "An Empirical Study of Training Self-Supervised Vision Transformers",
      ICCV 2021 (Alg. 1; facebookresearch/moco-v3 ``moco/builder.py``).
    """

    temperature: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if self.net.predictor is None:
            raise ValueError("MoCo v3 needs a predictor head")

    @property
    def target_net(self) -> SiameseNet:
        """The momentum encoder's module: ``net`` without the predictor."""
        return self.net.clone(predictor=None)

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        n = views[0].shape[0]
        x = concat_views(views[:2])
        (h, z, q), stats = apply_train(self.net, params, batch_stats, x)
        (_, k, _), t_stats = apply_train(
            self.target_net, aux["target_params"], aux["target_batch_stats"], x
        )
        # stop_gradient: keys come from the momentum encoder, which gradients never train.
        k = jax.lax.stop_gradient(k)
        loss = losses.moco_v3_loss(
            q[:n], q[n:], k[:n], k[n:], temperature=self.temperature, axis_name=axis_name
        )
        out = LossOutput(
            batch_stats=stats,
            aux=dict(aux, target_batch_stats=t_stats),
            metrics={"moco_v3": loss},
            embeddings=(z[:n], z[n:]),
            features=h[:n],
        )
        return loss, out
