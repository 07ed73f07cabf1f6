"""BEiT's block-wise patch masking (used by MaskFeat and iBOT) as a jittable, vmappable op.

The algorithm is BEiT's ``MaskingGenerator`` in the form iBOT's ``ImageFolderMask`` uses
(fractional targets, minimum block area ``(min(H, W) // 3)^2``): rectangles of random area
and aspect ratio are added until the target count is reached or a round of attempts adds
nothing. Python's ``random`` is replaced by uniform draws from fixed keys, so the same key
gives the same mask and a reference can replay the draws (see :func:`attempt_uniforms`).
"""

import math

import jax
import jax.numpy as jnp
from jax import lax


def default_min_area(grid: tuple[int, int]) -> int:
    """iBOT's smallest block area, ``(min(H, W) // 3)^2`` patches (16 on a 14 x 14 grid, as
    BEiT's ``min_num_patches``; 4 on CIFAR's 8 x 8)."""
    return (min(grid) // 3) ** 2


def attempt_uniforms(rng: jax.Array, round_index: jax.Array, attempt: jax.Array, max_attempts: int):
    """The four uniforms ``[area, log-aspect, top, left]`` of one attempt of one round.

    Args:
      rng: the mask's key.
      round_index: outer round ``t`` (each round adds one block).
      attempt: attempt ``a < max_attempts`` within the round.
      max_attempts: attempts per round.

    Returns:
      float32 ``[4]`` in ``[0, 1)``, from ``fold_in(rng, t * max_attempts + a)``.
    """
    return jax.random.uniform(jax.random.fold_in(rng, round_index * max_attempts + attempt), (4,))


def block_mask(
    rng: jax.Array,
    grid: tuple[int, int],
    num_masked: float | jax.Array,
    *,
    min_area: int | None = None,
    min_aspect: float = 0.3,
    max_attempts: int = 10,
) -> jax.Array:
    """One block-wise mask of about ``num_masked`` patches (never more).

    Each round draws up to ``max_attempts`` rectangles: area ``U(min_area, left)`` with
    ``left`` the patches still to mask, aspect ratio ``exp(U(log r, -log r))``,
    ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))`` (half to even, as
    Python's ``round``), kept only if ``h < H`` and ``w < W``, at a uniformly random
    position. The first rectangle that adds between 1 and ``left`` new patches is masked;
    the mask is done when ``num_masked`` patches are masked or a round adds none.

    Args:
      rng: PRNG key.
      grid: ``(H, W)`` patch grid.
      num_masked: target count (float or traced scalar; iBOT: ``ratio * H * W``).
      min_area: smallest rectangle area drawn; None = :func:`default_min_area`.
      min_aspect: aspect ratios lie in ``[min_aspect, 1 / min_aspect]`` (0.3).
      max_attempts: attempts per round (10).

    Returns:
      bool ``[H, W]``, True = masked.

    References:
      Bao et al., "BEiT: BERT Pre-Training of Image Transformers", ICLR 2022 (Alg. 1,
      ``masking_generator.py``); Zhou et al., "iBOT: Image BERT Pre-Training with Online
      Tokenizer", ICLR 2022 (``ImageFolderMask``); Wei et al., "Masked Feature Prediction",
      CVPR 2022 (block-wise masking for images).
    """
    gh, gw = grid
    if gh < 1 or gw < 1:
        raise ValueError(f"grid must be positive, got {grid}")
    if not 0.0 < min_aspect <= 1.0:
        raise ValueError(f"min_aspect must be in (0, 1], got {min_aspect}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    low = float(default_min_area(grid) if min_area is None else min_area)
    if low < 0:
        raise ValueError(f"min_area must be >= 0, got {min_area}")
    log_lo, log_hi = math.log(min_aspect), -math.log(min_aspect)
    target = jnp.asarray(num_masked, jnp.float32)
    rows = jnp.arange(gh)[:, None]
    cols = jnp.arange(gw)[None, :]

    def attempt(t, a, mask, count):
        """The rectangle of attempt ``a`` and the patches it would add (0 if rejected)."""
        u = attempt_uniforms(rng, t, a, max_attempts)
        left = target - count
        area = low + u[0] * (left - low)  # random.uniform(low, left), either order
        aspect = jnp.exp(log_lo + u[1] * (log_hi - log_lo))
        h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
        w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
        fits = (h < gh) & (w < gw)
        top = jnp.minimum(jnp.floor(u[2] * (gh - h + 1)), gh - h).astype(jnp.int32)
        lft = jnp.minimum(jnp.floor(u[3] * (gw - w + 1)), gw - w).astype(jnp.int32)
        rect = (rows >= top) & (rows < top + h) & (cols >= lft) & (cols < lft + w)
        new = jnp.sum(rect & ~mask)
        ok = fits & (new > 0) & (new <= left)
        return rect, jnp.where(ok, new, 0)

    def one_round(t, mask, count):
        def cond(s):
            a, _, delta = s
            return (a < max_attempts) & (delta == 0)

        def body(s):
            a, _, _ = s
            rect, delta = attempt(t, a, mask, count)
            return a + 1, rect, delta

        init = (jnp.int32(0), jnp.zeros((gh, gw), bool), jnp.int32(0))
        _, rect, delta = lax.while_loop(cond, body, init)
        return jnp.where(delta > 0, mask | rect, mask), delta

    def cond(s):
        _, _, count, delta = s
        return (count < target) & (delta > 0)

    def body(s):
        t, mask, count, _ = s
        mask, delta = one_round(t, mask, count)
        return t + 1, mask, count + delta, delta

    # ``delta = 1`` only starts the loop; each round then adds >= 1 patch or stops it.
    init = (jnp.int32(0), jnp.zeros((gh, gw), bool), jnp.int32(0), jnp.int32(1))
    return lax.while_loop(cond, body, init)[1]
