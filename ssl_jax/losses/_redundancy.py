"""Redundancy-reduction objectives: Barlow Twins and VICReg.

Both need statistics of the GLOBAL batch (per-dimension mean and variance, a ``D x D``
cross-correlation or covariance). They take ``axis_name`` (see ``_distributed``): None when
the arrays are the global batch (one device, or ``jax.jit`` over a sharded ``Mesh``, where
the compiler inserts the reductions); the mapped axis name inside ``shard_map``/``pmap``.

In the named case two kinds of cross-device sum appear, and they need different gradients:

* statistics used on every device to transform its OWN rows (the mean and variance that
  standardise or centre them): ``_batch_sum`` gathers the per-device partial sums, so the
  transpose (``psum_scatter``) hands each device the cotangents that all devices sent to
  its partial sum;
* matrices consumed identically on every device (the cross-correlation, the covariance):
  ``global_sum``, whose value is the ``psum`` but whose gradient flows to the local term
  only, because every device already holds the full cotangent of the replicated loss.

With these, every device returns the global loss and ``jax.grad`` on a device equals the
single-device gradient's rows for that device (``tests/losses/test_redundancy.py``).

Barlow Twins forms one ``D x D`` matrix and VICReg one per branch (as the official code);
the diagonal is read from it and the off-diagonal mask is an ``iota`` comparison that XLA
fuses into the reduction, so nothing else of that size is made. At ``D = 8192`` a float32
matrix is 256 MiB; the backward pass adds its cotangent (VICReg also the cotangent's
symmetrised copy, which buys one matmul instead of two per branch, see ``_gram``).
"""

import jax
import jax.numpy as jnp
from jax import lax

from ssl_jax.losses import _validate
from ssl_jax.losses._contrastive import _check_global_batch
from ssl_jax.losses._distributed import compute_dtype, global_sum, num_devices


def _batch_sum(x: jax.Array, axis_name: str | None) -> jax.Array:
    """Sum over the rows of the global batch, ``[n, D] -> [D]``; gradient reaches every row."""
    local = jnp.sum(x, axis=0)
    if axis_name is None:
        return local
    return jnp.sum(lax.all_gather(local, axis_name, axis=0), axis=0)


@jax.custom_vjp
def _gram(x: jax.Array) -> jax.Array:
    """``x^T x``; its backward is one matmul, ``x (g + g^T)``, where autodiff would use two."""
    return x.T @ x


def _gram_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return x.T @ x, x


def _gram_bwd(x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return (x @ (g + g.T),)


_gram.defvjp(_gram_fwd, _gram_bwd)


def _off_diagonal_sq_sum(c: jax.Array) -> jax.Array:
    """``sum_{i != j} c_ij^2`` without materialising a mask or a copy of ``c``."""
    rows = lax.broadcasted_iota(jnp.int32, c.shape, 0)
    cols = lax.broadcasted_iota(jnp.int32, c.shape, 1)
    return jnp.sum(jnp.square(jnp.where(rows == cols, 0.0, c)))


def _check_views(z1: jax.Array, z2: jax.Array, axis_name: str | None) -> None:
    _validate.check_rank(z1, 2, "z1")
    _validate.check_same_shape(z1, z2, ("z1", "z2"))
    _check_global_batch(z1, 2, "z1", axis_name)


def barlow_twins_loss(
    z1: jax.Array,
    z2: jax.Array,
    *,
    lambda_: float = 5e-3,
    eps: float = 1e-5,
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Barlow Twins: drive the cross-correlation of the two views' embeddings to identity.

    Each embedding dimension is standardised over the global batch (mean and biased
    variance, ``(z - mu) / sqrt(var + eps)``, i.e. an affine-free BatchNorm as in the
    official code), then ``C = z1n^T z2n / N`` and
    ``loss = sum_i (1 - C_ii)^2 + lambda_ * sum_{i != j} C_ij^2``.

    Args:
      z1: projector outputs of view 1 ``[N, D]`` (per-device rows when ``axis_name`` is set).
      z2: projector outputs of view 2 ``[N, D]``, row i the same image as ``z1[i]``.
      lambda_: weight of the redundancy-reduction term; the paper's 5e-3 (the official
        code's default is 0.0051).
      eps: BatchNorm epsilon added to the variance (PyTorch's default, used by the code).
      axis_name: mapped axis of ``shard_map``/``pmap`` holding the rest of the batch, or None.

    Returns:
      ``(loss, terms)``: the scalar loss and ``{'on_diag': sum_i (1 - C_ii)^2,
      'off_diag': sum_{i != j} C_ij^2}`` (unweighted), identical on every device.

    References:
      Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
      ICML 2021 (Eq. 1, 2 and Algorithm 1).
    """
    _check_views(z1, z2, axis_name)
    _validate.check_non_negative(lambda_, "lambda_")
    _validate.check_positive(eps, "eps")
    dtype = compute_dtype(z1, z2)
    n = z1.shape[0] * num_devices(axis_name)

    def standardize(z: jax.Array) -> jax.Array:
        z = z.astype(dtype)
        centred = z - _batch_sum(z, axis_name) / n
        var = _batch_sum(jnp.square(centred), axis_name) / n
        return centred * lax.rsqrt(var + eps)

    a, b = standardize(z1), standardize(z2)
    c = global_sum(a.T @ b / n, axis_name)
    on_diag = jnp.sum(jnp.square(1.0 - jnp.diagonal(c)))
    off_diag = _off_diagonal_sq_sum(c)
    loss = on_diag + lambda_ * off_diag
    return loss, {"on_diag": on_diag, "off_diag": off_diag}


def vicreg_loss(
    z1: jax.Array,
    z2: jax.Array,
    *,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """VICReg: invariance + variance hinge + covariance decorrelation, as the official code.

    * invariance: ``mean((z1 - z2)^2)`` over the global batch and all dimensions;
    * variance: ``(mean_j relu(gamma - S(z1)_j) + mean_j relu(gamma - S(z2)_j)) / 2`` with
      ``S(z)_j = sqrt(Var(z_j) + eps)`` and the unbiased variance over the global batch;
    * covariance: ``sum_{i != j} C(z1)_ij^2 / D + sum_{i != j} C(z2)_ij^2 / D`` with
      ``C(z) = (z - mean)^T (z - mean) / (N - 1)``.

    ``loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance``.

    Args:
      z1: expander outputs of view 1 ``[N, D]`` (per-device rows when ``axis_name`` is set).
      z2: expander outputs of view 2 ``[N, D]``.
      sim_coeff: lambda, weight of the invariance term (25).
      std_coeff: mu, weight of the variance term (25).
      cov_coeff: nu, weight of the covariance term (1).
      gamma: target standard deviation of every dimension (1).
      eps: added to the variance inside the square root (1e-4).
      axis_name: mapped axis of ``shard_map``/``pmap`` holding the rest of the batch, or None.

    Returns:
      ``(loss, terms)``: the scalar loss and the unweighted
      ``{'invariance', 'variance', 'covariance'}``, identical on every device.

    References:
      Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
      Self-Supervised Learning", ICLR 2022 (Eq. 1-6 and Algorithm 1; the official
      ``main_vicreg.py`` for the halved variance term).
    """
    _check_views(z1, z2, axis_name)
    for value, name in (
        (sim_coeff, "sim_coeff"),
        (std_coeff, "std_coeff"),
        (cov_coeff, "cov_coeff"),
    ):
        _validate.check_non_negative(value, name)
    _validate.check_positive(gamma, "gamma")
    _validate.check_positive(eps, "eps")
    dtype = compute_dtype(z1, z2)
    z1, z2 = z1.astype(dtype), z2.astype(dtype)
    n = z1.shape[0] * num_devices(axis_name)
    d = z1.shape[1]

    invariance = global_sum(jnp.sum(jnp.square(z1 - z2)) / (n * d), axis_name)

    def std_and_cov_terms(z: jax.Array) -> tuple[jax.Array, jax.Array]:
        centred = z - _batch_sum(z, axis_name) / n
        cov = global_sum(_gram(centred) / (n - 1), axis_name)
        std = jnp.sqrt(jnp.diagonal(cov) + eps)
        return jnp.mean(jax.nn.relu(gamma - std)), _off_diagonal_sq_sum(cov) / d

    std1, cov1 = std_and_cov_terms(z1)
    std2, cov2 = std_and_cov_terms(z2)
    variance = 0.5 * (std1 + std2)
    covariance = cov1 + cov2
    loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
    return loss, {"invariance": invariance, "variance": variance, "covariance": covariance}
