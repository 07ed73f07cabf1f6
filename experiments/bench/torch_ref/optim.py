"""LARS with ``optax.lars`` semantics (the optimiser ``ssl_jax.train.optim.lars`` builds),
and ssl_jax's warm-up cosine learning rate.

Per tensor ``w`` of rank > 1: ``u = g + wd * w``, then ``u *= eta ||w|| / (||u|| + eps)``
when both norms are > 0. Tensors of rank <= 1 (biases, BatchNorm scales and offsets: the
leaves ``ssl_jax.train.optim.is_bias_or_norm`` excludes) get neither: ``u = g``. Then for
every tensor ``v = momentum * v - lr * u`` and ``w += v`` (the rate enters the momentum
buffer, as in ``optax.lars`` and SimCLR's TF LARS).

References: You et al., "Large Batch Training of Convolutional Networks", 2017 (LARS);
SimCLR ``lars_optimizer.py``.
"""

import math
from collections.abc import Iterable

import torch


class LARS:
    """LARS whose learning rate is passed to each :meth:`step` (the schedule lives outside).

    Args:
      params: the tensors to train; rank <= 1 ones skip weight decay and the trust ratio.
      weight_decay: L2 coefficient ``wd`` added to the gradient.
      momentum: heavy-ball momentum.
      trust_coefficient: ``eta``.
      eps: added to ``||u||`` in the trust ratio.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        *,
        weight_decay: float,
        momentum: float = 0.9,
        trust_coefficient: float = 1e-3,
        eps: float = 0.0,
    ):
        params = list(params)
        self.adapted = [p for p in params if p.ndim > 1]
        self.plain = [p for p in params if p.ndim <= 1]
        self.wd, self.momentum, self.eta, self.eps = weight_decay, momentum, trust_coefficient, eps
        self.buf = {id(p): torch.zeros_like(p) for p in params}

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """Updates every parameter that has a ``.grad`` with learning rate ``lr``."""
        ps = [p for p in self.adapted if p.grad is not None]
        if ps:
            u = torch._foreach_add([p.grad for p in ps], ps, alpha=self.wd)
            w_norm = torch.stack(torch._foreach_norm(ps))
            u_norm = torch.stack(torch._foreach_norm(u))
            ratio = torch.where(
                (w_norm > 0) & (u_norm > 0), self.eta * w_norm / (u_norm + self.eps), 1.0
            )
            torch._foreach_mul_(u, list(ratio.unbind()))
            self._apply(ps, u, lr)
        plain = [p for p in self.plain if p.grad is not None]
        if plain:
            self._apply(plain, [p.grad for p in plain], lr)

    def _apply(self, params: list[torch.Tensor], updates: list[torch.Tensor], lr: float) -> None:
        bufs = [self.buf[id(p)] for p in params]
        torch._foreach_mul_(bufs, self.momentum)
        torch._foreach_add_(bufs, updates, alpha=-lr)
        torch._foreach_add_(params, bufs)


def warmup_cosine(step: int, *, peak: float, total: int, warmup: int) -> float:
    """``ssl_jax.train.optim.warmup_cosine_schedule`` with start and final rate 0.

    Args:
      step: optimiser steps taken so far.
      peak: the rate at the end of the warm-up.
      total: the run's optimiser steps ``K`` (the rate is 0 from there on).
      warmup: linear warm-up steps ``W``.

    Returns:
      The learning rate of this step.
    """
    if step < warmup:
        return peak * step / max(warmup, 1)
    progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
