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
A NaN in a window wins it (the first NaN, as ``numpy.argmax`` picks), so NaN propagates.

``relu=True`` folds a following ReLU into the same pass: a window whose maximum is not
positive outputs 0 and has no winner, so its gradient stops, as ``jax.nn.relu``'s does.
"""

import functools

import jax
import jax.numpy as jnp

_NO_WINNER = 4  # the window's gradient is stopped (by the ReLU)


def _windows(x):
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c)
    return x[:, :, 0, :, 0], x[:, :, 0, :, 1], x[:, :, 1, :, 0], x[:, :, 1, :, 1]


def _wins(u, v):
    """Where ``u`` is picked over ``v``: ``u >= v``, or ``u`` is NaN (so NaN propagates)."""
    return (u >= v) | jnp.isnan(u)


def _pool_and_winner(x, relu):
    # Compares and selects, not ``jnp.maximum``: XLA:CPU hands a maximum to a YNNPACK
    # element-wise fusion, which cannot read the strided windows, so it copied each window
    # out and wrote the maximum, then the ReLU, as arrays of their own. Selects leave the
    # whole pool (and its ReLU) to one XLA loop fusion that reads ``x`` once.
    a, b, c, d = _windows(x)
    a_wins, c_wins = _wins(a, b), _wins(c, d)
    top, bottom = jnp.where(a_wins, a, b), jnp.where(c_wins, c, d)
    top_wins = _wins(top, bottom)
    # The first maximum in row-major order: a before b, then the top row before the bottom.
    winner = jnp.where(top_wins, jnp.where(a_wins, 0, 1), jnp.where(c_wins, 2, 3))
    y = jnp.where(top_wins, top, bottom)
    if relu:
        # ``jax.nn.relu``'s values and gradient mask (none at zero; NaN stays NaN).
        winner = jnp.where(y > 0, winner, _NO_WINNER)
        y = jnp.where(y <= 0, jnp.zeros_like(y), y)
    return y, winner.astype(jnp.int8)


def max_pool_2x2(x: jax.Array, *, relu: bool = False) -> jax.Array:
    """Max over 2x2 windows with stride 2 of NHWC ``x``; ``nn.max_pool(x, (2, 2), (2, 2))``.

    Args:
      x: ``[B, H, W, C]``, H and W at least 2; an odd last row or column is dropped (VALID).
      relu: also apply a ReLU to the pooled values, in the same pass: the values and
        gradients of ``nn.relu(max_pool_2x2(x))``.

    Returns:
      ``[B, H // 2, W // 2, C]``.
    """
    if x.ndim != 4 or min(x.shape[1:3]) < 2:
        raise ValueError(f"max_pool_2x2 expects NHWC [B, H, W, C] with H, W >= 2, got {x.shape}")
    return _max_pool(x, relu)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x, relu):
    return _pool_and_winner(x, relu)[0]


def _fwd(x, relu):
    y, winner = _pool_and_winner(x, relu)
    return y, (winner, x.shape)


def _bwd(relu, res, g):
    del relu  # a window whose ReLU stopped the gradient has no winner
    winner, shape = res
    b, h, w, c = shape
    zero = jnp.zeros_like(g)
    parts = [jnp.where(winner == k, g, zero) for k in range(4)]
    rows = [jnp.stack(parts[2 * i : 2 * i + 2], axis=3) for i in range(2)]  # [B,h,w,2,C]
    dx = jnp.stack(rows, axis=2).reshape(b, h // 2 * 2, w // 2 * 2, c)
    return (jnp.pad(dx, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


_max_pool.defvjp(_fwd, _bwd)
