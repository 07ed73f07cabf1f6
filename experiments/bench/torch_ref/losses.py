"""The benchmarked objectives and step monitors in PyTorch, as ``ssl_jax.losses`` and
``ssl_jax.metrics`` define them (values and gradients checked against ssl_jax in float64 by
``experiments/bench/peers.py``). Single process: every batch here is the global batch.

References:
  Chen et al. 2020 (SimCLR, NT-Xent); Grill et al. 2020 (BYOL); Caron et al. 2020 (SwAV,
  Sinkhorn-Knopp); Zbontar et al. 2021 (Barlow Twins); Wang & Isola 2020 (alignment,
  uniformity); Chen & He 2021 (embedding std).
"""

import math

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """``ssl_jax.losses.nt_xent_loss``: mean cross entropy of the 2N anchors.

    Args:
      z1: first-view projections ``[N, D]``.
      z2: second-view projections ``[N, D]``, row i the same image as ``z1[i]``.
      temperature: softmax temperature.

    Returns:
      Scalar loss.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))  # an anchor is not its own negative
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, target)


def byol_symmetric(
    p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor
) -> torch.Tensor:
    """``ssl_jax.losses.byol_symmetric_loss``: ``L(p1, z2) + L(p2, z1)``, each a batch mean
    of ``2 - 2 cos``; the targets ``z`` are constants.

    Args:
      p1, p2: online predictions ``[B, D]`` of views 1 and 2.
      z1, z2: target projections ``[B, D]`` of views 1 and 2.

    Returns:
      Scalar loss.
    """

    def one(p, z):
        z = z.detach()  # the regression target gets no gradient, as in ssl_jax
        return (2 - 2 * (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(1)).mean()

    return one(p1, z2) + one(p2, z1)


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, *, epsilon: float, iters: int) -> torch.Tensor:
    """``ssl_jax.losses.sinkhorn_knopp``: log-domain Sinkhorn-Knopp, codes ``B * Q``.

    Args:
      scores: prototype scores ``[B, K]``.
      epsilon: entropic regularisation.
      iters: iterations (prototype marginals to ``1/K``, then sample marginals to ``1/B``).

    Returns:
      Codes ``[B, K]`` whose rows sum to 1 (no gradient: they are targets).
    """
    b, k = scores.shape
    log_q = scores / epsilon
    log_q = log_q - torch.logsumexp(torch.logsumexp(log_q, 0), 0)
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, 0, keepdim=True) - math.log(k)
        log_q = log_q - torch.logsumexp(log_q, 1, keepdim=True) - math.log(b)
    return torch.exp(log_q + math.log(b))


def swav(
    scores: list[torch.Tensor],
    *,
    num_high_res: int,
    temperature: float,
    epsilon: float,
    iters: int,
    queue_scores: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """``ssl_jax.losses.swav_loss``: every crop predicts the codes of each other
    high-resolution crop; per coded crop the cross entropies are averaged over its
    ``len(scores) - 1`` predictors, then over the ``num_high_res`` coded crops.

    Args:
      scores: one ``[B, K]`` array of raw prototype scores per crop, high resolution first.
      num_high_res: how many leading crops get codes.
      temperature: softmax temperature of the predictions.
      epsilon: Sinkhorn entropic regularisation.
      iters: Sinkhorn iterations.
      queue_scores: optional ``[Q, K]`` scores of queued embeddings per coded crop, put
        before the batch in the Sinkhorn input (only the batch rows' codes are used).

    Returns:
      Scalar loss.
    """
    b = scores[0].shape[0]
    log_p = [F.log_softmax(s / temperature, dim=1) for s in scores]
    loss = scores[0].new_zeros(())
    for i in range(num_high_res):
        assign = scores[i].detach()
        if queue_scores is not None:
            assign = torch.cat([queue_scores[i].to(assign.dtype), assign])
        q = sinkhorn(assign, epsilon=epsilon, iters=iters)[-b:]
        sub = sum(-(q * log_p[v]).sum() for v in range(len(scores)) if v != i)
        loss = loss + sub / b / (len(scores) - 1)
    return loss / num_high_res


def barlow_twins(
    z1: torch.Tensor, z2: torch.Tensor, lambda_: float, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``ssl_jax.losses.barlow_twins_loss`` (unscaled; the method multiplies by its scale).

    Args:
      z1: projector outputs of view 1 ``[N, D]``.
      z2: projector outputs of view 2 ``[N, D]``.
      lambda_: weight of the off-diagonal term.
      eps: added to the biased batch variance when standardising.

    Returns:
      ``(loss, on_diag, off_diag)``: ``on + lambda_ * off``, ``sum_i (1 - C_ii)^2``,
      ``sum_{i != j} C_ij^2``.
    """
    n = z1.shape[0]

    def standardize(z):
        c = z - z.mean(0)
        return c * torch.rsqrt(c.square().mean(0) + eps)

    c = standardize(z1).T @ standardize(z2) / n
    diag = torch.diagonal(c)
    on = (1 - diag).square().sum()
    off = c.square().sum() - diag.square().sum()
    return on + lambda_ * off, on, off


@torch.no_grad()
def monitors(z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
    """The step's collapse monitors: ``ssl_jax.metrics`` ``embedding_std``, ``alignment``
    (alpha 2) and ``uniformity`` (t 2) of the two views' embeddings ``[B, D]``."""
    u1, u2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = u1.shape[0]
    sq = (2 - 2 * u1 @ u1.T).clamp_min(0)
    logits = (-2 * sq).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    return {
        "embedding_std": u1.std(0, unbiased=False).mean(),
        "alignment": (u1 - u2).square().sum(1).mean(),
        "uniformity": torch.logsumexp(logits.flatten(), 0) - math.log(n * (n - 1)),
    }
