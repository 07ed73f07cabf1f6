"""2x2 / stride-2 max-pooling whose backward pass is elementwise instead of a scatter.

``nn.max_pool`` lowers to ``reduce_window``, and its gradient to ``select_and_scatter``,
which XLA:CPU runs as a slow loop: for the ConvNet's three pools at batch 256 (maps
``[256,32,32,32]``, ``[256,16,16,64]``, ``[256,8,8,128]``) forward + backward took 98, 48
and 23 ms on 2 cores, against 9.6, 1.2 and 0.7 ms for this function (development
measurement; ``experiments/bench``'s ``max_pool`` before/after times whole steps).

A plain ``reshape(...).max(axis=(2, 4))`` is not a drop-in: its JVP sends the gradient to
every element equal to the recomputed maximum, split among ties, and XLA may recompute the
pooled activation inside a fusion with different rounding than the stored maximum, so the
equality mask can miss (a lost gradient) or double up. Here the forward pass records which
of the four window entries won (the first maximum in row-major order, as
``select_and_scatter``'s ``>=`` selection does) and the backward pass routes the whole
incoming gradient to it, so values and gradients equal ``nn.max_pool``'s, ties included.
"""

import jax
import jax.numpy as jnp


def _windows(x):
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c)
    return x[:, :, 0, :, 0], x[:, :, 0, :, 1], x[:, :, 1, :, 0], x[:, :, 1, :, 1]


def _pool_and_winner(x):
    a, b, c, d = _windows(x)
    top, bottom = jnp.maximum(a, b), jnp.maximum(c, d)
    top_wins = top >= bottom
    # The first maximum in row-major order: a before b, then the top row before the bottom.
    winner = jnp.where(top_wins, jnp.where(a >= b, 0, 1), jnp.where(c >= d, 2, 3))
    return jnp.where(top_wins, top, bottom), winner.astype(jnp.int8)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """Max over 2x2 windows with stride 2 of NHWC ``x``; ``nn.max_pool(x, (2, 2), (2, 2))``.

    Args:
      x: ``[B, H, W, C]``, H and W at least 2; an odd last row or column is dropped (VALID).

    Returns:
      ``[B, H // 2, W // 2, C]``.
    """
    if x.ndim != 4 or min(x.shape[1:3]) < 2:
        raise ValueError(f"max_pool_2x2 expects NHWC [B, H, W, C] with H, W >= 2, got {x.shape}")
    return _max_pool(x)


@jax.custom_vjp
def _max_pool(x):
    return _pool_and_winner(x)[0]


def _fwd(x):
    y, winner = _pool_and_winner(x)
    return y, (winner, x.shape)


def _bwd(res, g):
    winner, shape = res
    b, h, w, c = shape
    zero = jnp.zeros_like(g)
    parts = [jnp.where(winner == k, g, zero) for k in range(4)]
    rows = [jnp.stack(parts[2 * i : 2 * i + 2], axis=3) for i in range(2)]  # [B,h,w,2,C]
    dx = jnp.stack(rows, axis=2).reshape(b, h // 2 * 2, w // 2 * 2, c)
    return (jnp.pad(dx, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


_max_pool.defvjp(_fwd, _bwd)
