"""SwAV (Caron et al. 2020): swapped prediction of online Sinkhorn codes over prototypes."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax import losses
from ssl_jax.methods.base import LossOutput, bn_vars
from ssl_jax.methods.common import (
    SiameseMethod,
    apply_train,
    init_net,
    l2_normalize,
    multi_crop_forward,
    split_views,
)
from ssl_jax.models.heads import Prototypes, normalize_prototypes
from ssl_jax.train.optim import zero_grads_for


class PrototypeHead(nn.Module):
    """L2-normalises the projection and scores it against the prototypes (SwAV's head).

    Used as ``SiameseNet``'s ``predictor``: the net then returns ``(h, z, scores)`` and the
    prototypes live at ``params['predictor']['prototypes']['kernel']`` (``[D, K]``).

    Attributes:
      num_prototypes: K (3000 in the paper).
      dtype: compute dtype.

    References:
      Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments", NeurIPS 2020 (``resnet50.py``: ``forward_head``).
    """

    num_prototypes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        del train
        return Prototypes(self.num_prototypes, dtype=self.dtype, name="prototypes")(l2_normalize(z))


def _is_prototype(path: tuple[str, ...], _) -> bool:
    return "prototypes" in path


@dataclasses.dataclass(frozen=True, kw_only=True)
class SwAV(SiameseMethod):
    """SwAV with multi-crop, prototype renormalisation, prototype freezing and a feature queue.

    ``net`` is backbone -> projector (2-layer MLP) -> :class:`PrototypeHead`. Views of
    different sizes (2 global crops, then ``num_local_crops`` small ones) go through the
    backbone in one pass per resolution and through the heads together
    (:func:`~ssl_jax.methods.common.multi_crop_forward`). The first ``num_high_res`` crops
    get Sinkhorn-Knopp codes and every other crop predicts them
    (:func:`ssl_jax.losses.swav_loss`).

    Prototypes are L2-normalised at init and after every optimiser step (the official code
    normalises before each forward; same thing one step shifted). Their gradients are
    zeroed for the first ``freeze_prototypes_steps`` steps (SwAV: one epoch on ImageNet,
    solo-learn: 2 on CIFAR). With weight decay the optimiser then moves each prototype along
    itself only, which the renormalisation undoes, so they stay exactly in place.

    Queue (``queue_size > 0``, SwAV's small-batch recipe): ``aux`` holds
    ``{'queue': [num_high_res, Q, D], 'queue_filled': int}`` with the normalised
    embeddings of the high-resolution crops of past batches, newest first. From step
    ``queue_start_step`` on, each batch is pushed in after the loss; once the queue is full,
    its scores against the CURRENT prototypes join the Sinkhorn input. Under ``pmap`` each
    device passes its ``Q / num_devices`` rows to Sinkhorn (the official per-GPU queue) and
    the queue itself stays identical on all devices.

    Collapse monitors get the normalised projections of the two global crops.

    Attributes:
      num_high_res: the first views, which get codes (the global crops).
      temperature: softmax temperature of the predictions.
      epsilon: entropic regularisation of Sinkhorn-Knopp.
      sinkhorn_iters: Sinkhorn-Knopp iterations.
      freeze_prototypes_steps: steps during which the prototypes get no gradient.
      queue_size: ``Q``, past embeddings kept per high-resolution crop (0 = no queue).
      queue_start_step: the step from which the queue is filled and used.

    References:
      Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments", NeurIPS 2020 (Sec. 3, App. A; ``main_swav.py``).
    """

    num_high_res: int = 2
    temperature: float = 0.1
    epsilon: float = 0.05
    sinkhorn_iters: int = 3
    freeze_prototypes_steps: int = 0
    queue_size: int = 0
    queue_start_step: int = 0

    def __post_init__(self):
        if not isinstance(self.net.predictor, PrototypeHead):
            raise ValueError("SwAV's net needs predictor=PrototypeHead(num_prototypes)")
        for name in ("freeze_prototypes_steps", "queue_size", "queue_start_step"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def init(self, rng, images):
        views = self.views(jax.random.split(rng, images.shape[0]), images)
        params, stats = init_net(self.net, rng, views[0])
        params = self._normalize(params)
        aux = {}
        if self.queue_size:
            _, z, _ = jax.eval_shape(
                lambda x: self.net.apply(bn_vars(params, stats), x, train=False), views[0]
            )
            aux = {
                "queue": jnp.zeros((self.num_high_res, self.queue_size, z.shape[-1]), jnp.float32),
                "queue_filled": jnp.zeros((), jnp.int32),
            }
        return {"params": params, "batch_stats": stats, "aux": aux}

    def forward(self, params, batch_stats, views):
        """The multi-crop forward pass in train mode.

        Returns:
          ``(h, scores, emb, batch_stats)``: the backbone features of all crops, then per
          crop the prototype scores and the L2-normalised projections, and the new BN
          statistics.
        """
        (h, z, scores), stats = apply_train(
            self.net, params, batch_stats, list(views), method=multi_crop_forward, train=True
        )
        return h, split_views(scores, len(views)), split_views(l2_normalize(z), len(views)), stats

    @staticmethod
    def output(loss, stats, aux, metrics, h, emb) -> LossOutput:
        """The step's :class:`LossOutput`: monitors on the two global crops."""
        return LossOutput(
            batch_stats=stats,
            aux=aux,
            metrics={"swav": loss, **metrics},
            embeddings=(emb[0], emb[1]),
            features=h[: emb[0].shape[0]],
        )

    def loss(self, params, batch_stats, aux, views, rng, step, *, axis_name=None):
        h, scores, emb, stats = self.forward(params, batch_stats, views)
        code_kw = dict(
            num_high_res=self.num_high_res,
            epsilon=self.epsilon,
            num_iters=self.sinkhorn_iters,
            axis_name=axis_name,
        )
        metrics = {}
        codes, new_aux = None, aux
        if self.queue_size:
            use_queue = (step >= self.queue_start_step) & (aux["queue_filled"] >= self.queue_size)
            # Only the codes (targets, no gradient) depend on the queue, so only they are
            # computed under the branch: the queue is scored only when it is in use, and
            # the differentiable part of the loss stays outside the conditional.
            targets = [lax.stop_gradient(s) for s in scores]
            codes = lax.cond(
                use_queue,
                lambda: losses.swav_codes(
                    targets,
                    queue_scores=self._queue_scores(params, aux["queue"], axis_name),
                    **code_kw,
                ),
                lambda: losses.swav_codes(targets, **code_kw),
            )
            new_aux = self._push(aux, emb[: self.num_high_res], step, axis_name)
            metrics["queue_in_use"] = use_queue.astype(jnp.float32)
        loss = losses.swav_loss(scores, temperature=self.temperature, codes=codes, **code_kw)
        return loss, self.output(loss, stats, new_aux, metrics, h, emb)

    def _queue_scores(self, params, queue, axis_name):
        # The codes are targets computed without gradient (Sinkhorn stops it too); the queue
        # is scored against the current prototypes.
        kernel = lax.stop_gradient(params["predictor"]["prototypes"]["kernel"])
        if axis_name is not None:
            n_dev = lax.axis_size(axis_name)
            if self.queue_size % n_dev:
                raise ValueError(f"queue_size {self.queue_size} must divide over {n_dev} devices")
            rows = self.queue_size // n_dev
            queue = lax.dynamic_slice_in_dim(queue, lax.axis_index(axis_name) * rows, rows, 1)
        return [queue[i] @ kernel.astype(queue.dtype) for i in range(self.num_high_res)]

    def _push(self, aux, embeddings, step, axis_name):
        queue = aux["queue"]
        new = []
        for i, e in enumerate(embeddings):
            # stop_gradient: the queue is state carried to later steps, not a loss output.
            e = lax.stop_gradient(e).astype(queue.dtype)
            if axis_name is not None:
                e = lax.all_gather(e, axis_name, axis=0, tiled=True)
            new.append(jnp.concatenate([e, queue[i]], axis=0)[: self.queue_size])
        active = step >= self.queue_start_step
        rows = embeddings[0].shape[0] * (1 if axis_name is None else lax.axis_size(axis_name))
        filled = jnp.minimum(aux["queue_filled"] + rows, self.queue_size)
        return dict(
            aux,
            queue=jnp.where(active, jnp.stack(new), queue),
            queue_filled=jnp.where(active, filled, aux["queue_filled"]).astype(jnp.int32),
        )

    def _normalize(self, params):
        head = dict(params["predictor"])
        head["prototypes"] = normalize_prototypes(head["prototypes"])
        return {**params, "predictor": head}

    def after_update(self, params, aux, step):
        return self._normalize(params), aux

    def grad_mask(self, grads, step):
        if not self.freeze_prototypes_steps:
            return grads
        return zero_grads_for(grads, _is_prototype, active=step < self.freeze_prototypes_steps)

    def step_metrics(self, aux, step):
        frozen = jnp.asarray(step) < self.freeze_prototypes_steps
        return {"prototypes_frozen": frozen.astype(jnp.float32)}
