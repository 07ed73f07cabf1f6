"""One PyTorch training step per benchmarked method, built from the same ssl_jax config.

``Peer(config).step(views, labels)`` does what one call of the jitted ssl_jax step does
for that method, minus the device augmentation (both sides get the same ready views):
forward of every view (views of one size concatenated, so BatchNorm sees them together),
the loss, backward, LARS with the warm-up cosine rate, BatchNorm running statistics, the
method's extra state (BYOL's EMA target, SwAV's prototype normalisation, freezing and
queue), the online linear probe (Adam) on stop-gradient features, the gradient norm, the
finiteness guard and the collapse monitors.
"""

import copy
import math

import ml_collections
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from experiments.bench.torch_ref import losses, nets
from experiments.bench.torch_ref.optim import LARS, warmup_cosine

METHODS = ("simclr", "byol", "swav", "barlow_twins")
NUM_HIGH_RES = 2  # SwAV crops that get codes (ssl_jax.build_methods.swav)


def _get(c: ml_collections.ConfigDict, dotted: str):
    node = c
    for part in dotted.split("."):
        node = node[part]
    return node


def _check_supported(c: ml_collections.ConfigDict) -> None:
    """Refuses settings the peer does not mirror, rather than timing a different step."""
    resnet = c.model.encoder.startswith("resnet")
    unsupported = {
        "method": c.method not in METHODS,
        "optim.name": c.optim.name != "lars",
        "optim.clip_grad_norm": bool(c.optim.clip_grad_norm),
        "model.dtype": c.model.dtype != "float32",
        "model.width": resnet and c.model.width != 1,
        "model.stem": resnet and c.model.stem != "cifar",
        "head.last_bn": bool(c.head.last_bn),
    }
    bad = [f"{k}={_get(c, k)!r}" for k, v in unsupported.items() if v]
    if bad:
        raise ValueError(
            f"no PyTorch peer for {', '.join(bad)}: it mirrors {METHODS} with LARS, float32, "
            "the CIFAR-stem ResNet-18 or the ConvNet, and projectors without a last BN"
        )


class Peer:
    """The PyTorch step for ``config``.

    Args:
      c: an ssl_jax config (``experiments/configs/<method>_cifar10.py`` and overrides).
      channels_last: keep images and convolution weights in channels-last memory format.
      num_train_examples: fixes the schedules (warm-up, cosine, EMA, frozen prototypes,
        queue start), as ``ssl_jax.build.method`` gets it.
    """

    def __init__(
        self,
        c: ml_collections.ConfigDict,
        *,
        channels_last: bool,
        num_train_examples: int = 50_000,
    ):
        _check_supported(c)
        self.c, self.method = c, c.method
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        enc = nets.encoder(c.model.encoder)
        h = c.head
        proj = nets.MLP(enc.num_features, [h.proj_hidden] * (h.proj_layers - 1), h.proj_dim)
        mods = {"encoder": enc, "projector": proj}
        if c.method == "byol":
            mods["predictor"] = nets.MLP(h.proj_dim, [h.pred_hidden], h.proj_dim)
        if c.method == "swav":
            mods["prototypes"] = nets.Prototypes(h.proj_dim, c.swav.num_prototypes)
        self.net = nn.ModuleDict(mods).to(memory_format=self.memory_format)

        # Schedules exactly as ssl_jax.config / ssl_jax.build compute them.
        per_epoch = max(1, num_train_examples // c.data.batch_size)
        self.total = c.train.num_steps or int(c.train.epochs * per_epoch)
        self.warmup = min(self.total // 2, round(c.optim.warmup_epochs * per_epoch))
        scale = {"linear": c.data.batch_size / 256, "sqrt": c.data.batch_size**0.5, "none": 1.0}
        self.peak_lr = c.optim.base_lr * scale[c.optim.lr_scaling]
        self.opt = LARS(
            self.net.parameters(),
            weight_decay=c.optim.weight_decay,
            momentum=c.optim.momentum,
            trust_coefficient=c.optim.get("trust_coefficient", 1e-3),
        )

        self.target = None
        if c.method == "byol":  # encoder + projector; BN in train mode with its own stats
            self.target = copy.deepcopy(nn.ModuleDict({"encoder": enc, "projector": proj}))
            self.target.requires_grad_(False)
        if c.method == "swav":
            s = c.swav
            self.freeze_steps = round(s.freeze_prototypes_epochs * per_epoch)
            self.queue_start = round(s.queue_start_epochs * per_epoch)
            self.queue = (
                torch.zeros(NUM_HIGH_RES, s.queue_size, h.proj_dim) if s.queue_size else None
            )
            self.queue_filled = 0

        self.probe = nn.Linear(enc.num_features, c.data.num_classes)
        self.probe_opt = torch.optim.Adam(self.probe.parameters(), lr=c.optim.probe_lr)
        self.step_count = 0

    def to_torch(self, views_nhwc: list[np.ndarray]) -> list[torch.Tensor]:
        """NHWC float views (``jax_side.make_views``) -> NCHW tensors in this peer's format."""
        return [
            torch.tensor(v).permute(0, 3, 1, 2).contiguous(memory_format=self.memory_format)
            for v in views_nhwc
        ]

    def step(self, views: list[torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
        """One training step on ready views.

        Args:
          views: the output of :meth:`to_torch`, ``[B, 3, h, w]`` per view.
          labels: ``[B]`` int64, for the online probe.

        Returns:
          The step's scalar metrics (loss, grad norm, probe loss and accuracy, monitors).
        """
        self.net.zero_grad(set_to_none=True)
        loss, feats, (z1, z2) = self._loss(views)
        loss.backward()
        if self.method == "swav" and self.step_count < self.freeze_steps:
            # ssl_jax zeroes the gradient; LARS still applies weight decay and momentum.
            self.net["prototypes"].kernel.grad.zero_()
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        finite = bool(torch.isfinite(loss) & torch.isfinite(grad_norm))
        lr = warmup_cosine(self.step_count, peak=self.peak_lr, total=self.total, warmup=self.warmup)
        if finite:  # a non-finite step leaves the networks as they were, as in ssl_jax
            self.opt.step(lr)
            self._after_update()

        self.probe_opt.zero_grad(set_to_none=True)
        logits = self.probe(feats.detach())  # the probe must not shape the representation
        probe_loss = F.cross_entropy(logits, labels)
        probe_loss.backward()
        if finite:
            self.probe_opt.step()

        out = {
            "loss": loss.detach(),
            "learning_rate": lr,
            "grad_norm": grad_norm,
            "probe_loss": probe_loss.detach(),
            "probe_top1": (logits.argmax(1) == labels).float().mean(),
            "finite": float(finite),
            **losses.monitors(z1.detach(), z2.detach()),
        }
        self.step_count += 1
        return {k: float(v) for k, v in out.items()}

    # -- the method's loss -----------------------------------------------------------------
    def _encode(self, views: list[torch.Tensor]) -> torch.Tensor:
        """Backbone features of every view, one forward per run of equal-size views."""
        groups: list[list[torch.Tensor]] = []
        for v in views:
            if groups and groups[-1][-1].shape == v.shape:
                groups[-1].append(v)
            else:
                groups.append([v])
        return torch.cat([self.net["encoder"](torch.cat(g)) for g in groups])

    def _loss(self, views: list[torch.Tensor]):
        """``(loss, first-view features, (embedding 1, embedding 2))``."""
        if self.method == "swav":
            return self._swav_loss(views)
        c, n = self.c, views[0].shape[0]
        x = torch.cat(views[:2])
        h = self.net["encoder"](x)
        z = self.net["projector"](h)
        z1, z2 = z[:n], z[n:]
        if self.method == "simclr":
            loss = losses.nt_xent(z1, z2, c.loss.temperature)
        elif self.method == "barlow_twins":
            loss = c.loss.scale * losses.barlow_twins(z1, z2, c.loss.lambda_)[0]
        else:  # byol
            p = self.net["predictor"](z)
            with torch.no_grad():  # the target gives regression targets only
                zt = self.target["projector"](self.target["encoder"](x))
            loss = losses.byol_symmetric(p[:n], p[n:], zt[:n], zt[n:])
        return loss, h[:n], (z1, z2)

    def _swav_loss(self, views: list[torch.Tensor]):
        c, n = self.c, views[0].shape[0]
        h = self._encode(views)
        z = self.net["projector"](h)  # heads once over all crops, as ssl_jax
        scores = list(self.net["prototypes"](z).split(n))
        emb = F.normalize(z, dim=1).split(n)
        kw = dict(
            num_high_res=NUM_HIGH_RES,
            temperature=c.loss.temperature,
            epsilon=c.swav.epsilon,
            iters=c.swav.sinkhorn_iters,
        )
        if self.queue is None:
            return losses.swav(scores, **kw), h[:n], (emb[0], emb[1])
        size = self.queue.shape[1]
        active = self.step_count >= self.queue_start
        use = active and self.queue_filled >= size
        queue_scores = None
        if use:  # as ssl_jax: the queue is scored against the current prototypes when used
            with torch.no_grad():  # targets only
                kernel = self.net["prototypes"].kernel
                queue_scores = [self.queue[i] @ kernel for i in range(NUM_HIGH_RES)]
        loss = losses.swav(scores, queue_scores=queue_scores, **kw)
        if active:  # newest first
            new = torch.stack([e.detach() for e in emb[:NUM_HIGH_RES]])
            self.queue = torch.cat([new, self.queue], 1)[:, :size]
            self.queue_filled = min(self.queue_filled + n, size)
        return loss, h[:n], (emb[0], emb[1])

    # -- after the optimiser ----------------------------------------------------------------
    @torch.no_grad()
    def _after_update(self) -> None:
        if self.method == "swav":
            self.net["prototypes"].normalize()
        if self.method == "byol":
            # ssl_jax.train.ema.cosine_ema_momentum of the step just taken.
            k = min(max(self.step_count, 0), self.total)
            base, final = self.c.train.ema_base, self.c.train.ema_final
            tau = final - (final - base) * (math.cos(math.pi * k / self.total) + 1) / 2
            for name in ("encoder", "projector"):
                tp = list(self.target[name].parameters())
                torch._foreach_mul_(tp, tau)
                torch._foreach_add_(tp, list(self.net[name].parameters()), alpha=1 - tau)
