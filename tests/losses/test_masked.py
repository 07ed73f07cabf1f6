"""MAE patchify/unpatchify and reconstruction loss against numpy ports of the official code."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import mae_loss, patchify, unpatchify
from tests.losses.helpers import MODES, check_distributed, fd_grad, normal


def np_patchify(images, p):
    """MAE ``models_mae.patchify`` on NCHW: reshape, einsum('nchpwq->nhwpqc'), reshape."""
    imgs = np.transpose(images, (0, 3, 1, 2))
    n, c, hh, ww = imgs.shape
    h, w = hh // p, ww // p
    x = imgs.reshape(n, c, h, p, w, p)
    x = np.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, h * w, p * p * c)


def np_mae(pred, target, mask, norm_pix, eps=1e-6):
    """MAE ``forward_loss``: optional per-patch norm (torch.var: unbiased), masked mean."""
    pred, target, mask = (np.asarray(a, np.float64) for a in (pred, target, mask))
    if norm_pix:
        mean = target.mean(axis=-1, keepdims=True)
        var = target.var(axis=-1, keepdims=True, ddof=1)
        target = (target - mean) / (var + eps) ** 0.5
    loss = ((pred - target) ** 2).mean(axis=-1)
    return float((loss * mask).sum() / mask.sum())


@pytest.mark.parametrize(("shape", "p"), [((2, 8, 8, 3), 4), ((1, 6, 9, 2), 3), ((3, 4, 4, 1), 1)])
def test_patchify_matches_mae_and_round_trips(shape, p):
    (images,) = normal(sum(shape), shape)
    patches = patchify(images, p)
    np.testing.assert_array_equal(patches, np_patchify(images, p))
    grid = (shape[1] // p, shape[2] // p)
    np.testing.assert_array_equal(unpatchify(patches, p, grid=grid), images)
    np.testing.assert_array_equal(jax.jit(patchify, static_argnums=1)(images, p), patches)


def test_patch_order_is_row_major():
    images = jnp.arange(4 * 4, dtype=jnp.float32).reshape(1, 4, 4, 1)
    patches = patchify(images, 2)
    np.testing.assert_array_equal(patches[0, 0], [0, 1, 4, 5])  # top-left
    np.testing.assert_array_equal(patches[0, 1], [2, 3, 6, 7])  # top-right
    np.testing.assert_array_equal(patches[0, 2], [8, 9, 12, 13])  # bottom-left
    np.testing.assert_array_equal(unpatchify(patches, 2), images)  # square grid by default


def test_patchify_errors():
    with pytest.raises(ValueError, match="multiple of patch"):
        patchify(jnp.zeros((1, 6, 8, 3)), 4)
    with pytest.raises(ValueError, match="rank 4"):
        patchify(jnp.zeros((6, 8, 3)), 2)
    with pytest.raises(ValueError, match="positive int"):
        patchify(jnp.zeros((1, 8, 8, 3)), 0)
    with pytest.raises(ValueError, match="square grid"):
        unpatchify(jnp.zeros((1, 6, 12)), 2)
    with pytest.raises(ValueError, match="holds 4 patches"):
        unpatchify(jnp.zeros((1, 6, 12)), 2, grid=(2, 2))
    with pytest.raises(ValueError, match="multiple of patch"):
        unpatchify(jnp.zeros((1, 4, 10)), 2)


def mae_inputs(seed, b, n, d, frac=0.75):
    pred, target = normal(seed, (b, n, d), (b, n, d))
    mask = (np.random.default_rng(seed).random((b, n)) < frac).astype(np.float32)
    mask[0, 0], mask[-1, -1] = 1.0, 0.0  # at least one masked and one visible patch
    return pred, 3.0 * target + 1.0, mask


@pytest.mark.parametrize("norm_pix", [True, False])
@pytest.mark.parametrize(("b", "n", "d"), [(2, 4, 3), (3, 5, 8)])
def test_mae_matches_numpy(norm_pix, b, n, d):
    pred, target, mask = mae_inputs(b * n * d, b, n, d)
    loss = mae_loss(pred, target, mask, norm_pix_loss=norm_pix)
    np.testing.assert_allclose(loss, np_mae(pred, target, mask, norm_pix), rtol=1e-5)
    jitted = jax.jit(lambda *a: mae_loss(*a, norm_pix_loss=norm_pix))(pred, target, mask)
    np.testing.assert_allclose(jitted, loss, rtol=1e-6)
    grad = jax.grad(mae_loss)(pred, target, mask, norm_pix_loss=norm_pix)
    (ref,) = fd_grad(lambda a: np_mae(a, target, mask, norm_pix), (pred,))
    np.testing.assert_allclose(grad, ref, rtol=1e-4, atol=1e-6)


def test_mae_ignores_visible_patches():
    pred, target, mask = mae_inputs(1, 2, 6, 4)
    changed = np.where(mask[..., None] == 0, pred + 100.0, pred)
    np.testing.assert_allclose(mae_loss(changed, target, mask), mae_loss(pred, target, mask))
    grad = jax.grad(mae_loss)(pred, target, mask)
    np.testing.assert_array_equal(grad[mask == 0], 0.0)
    assert np.all(np.abs(grad[mask == 1]).sum(-1) > 0)
    # Bool masks work; the target is not differentiated.
    np.testing.assert_allclose(mae_loss(pred, target, mask > 0), mae_loss(pred, target, mask))
    np.testing.assert_array_equal(jax.grad(mae_loss, 1)(pred, target, mask), 0.0)


def test_mae_norm_pix_and_empty_mask():
    pred, target, mask = mae_inputs(2, 2, 4, 6)
    # With per-patch normalisation a per-patch affine change of the target changes nothing.
    scale = np.random.default_rng(0).uniform(0.5, 4.0, size=(2, 4, 1)).astype(np.float32)
    a = mae_loss(pred, target, mask)
    b = mae_loss(pred, target * scale - 7.0, mask)
    np.testing.assert_allclose(a, b, rtol=1e-4)
    assert float(mae_loss(pred, target, np.zeros_like(mask))) == 0.0


def test_mae_errors():
    pred, target, mask = mae_inputs(3, 2, 4, 3)
    with pytest.raises(ValueError, match="same shape"):
        mae_loss(pred, target[:, :3], mask)
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 4\)"):
        mae_loss(pred, target, mask[:, :3])
    with pytest.raises(ValueError, match="rank 3"):
        mae_loss(pred[0], target[0], mask)
    with pytest.raises(ValueError, match="at least 2 values"):
        mae_loss(pred[..., :1], target[..., :1], mask)
    with pytest.raises(ValueError, match="eps"):
        mae_loss(pred, target, mask, eps=0.0)


@pytest.mark.parametrize("mode", MODES)
def test_mae_distributed(mesh, mode):
    """Devices hold different numbers of masked patches: the mean is over the global count."""
    pred, target, mask = mae_inputs(4, 16, 4, 3, frac=0.5)
    counts = mask.reshape(8, -1).sum(axis=1)
    assert len(set(counts.tolist())) > 1
    wrapped = lambda a, t, m, axis_name: (mae_loss(a, t, m, axis_name=axis_name), {})
    check_distributed(wrapped, (pred, target, mask), mesh, mode, zero_grads=(1, 2))
