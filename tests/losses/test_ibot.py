"""iBOT's masked patch loss against plain numpy (float64), from Eq. 2 of the paper and
``iBOTLoss``: values, gradients (finite differences w.r.t. the student; none to the teacher,
centre or masks) and the three distributed modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import ibot_patch_loss
from tests.losses.helpers import MODES, check_distributed, fd_grad


def np_log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def np_patch_loss(student, teacher, masks, center, student_temp, teacher_temp):
    """Per crop: for each image, sum_n m_n H(P_t(u_n), P_s(u_n^)) / max(sum_n m_n, 1); mean
    over images; mean over crops (iBOTLoss: images with nothing masked count as 0)."""
    total = 0.0
    for s, t, m in zip(student, teacher, masks, strict=True):
        q = np.exp(np_log_softmax((np.asarray(t, np.float64) - center) / teacher_temp))
        ce = -np.sum(q * np_log_softmax(np.asarray(s, np.float64) / student_temp), axis=-1)
        m = np.asarray(m, np.float64)
        total += np.mean(np.sum(ce * m, axis=1) / np.maximum(m.sum(axis=1), 1.0))
    return total / len(student)


def inputs(seed, crops, b, n, k):
    rng = np.random.default_rng(seed)
    student = [rng.normal(size=(b, n, k)).astype(np.float32) for _ in range(crops)]
    teacher = [rng.normal(size=(b, n, k)).astype(np.float32) for _ in range(crops)]
    masks = [rng.random((b, n)) < 0.4 for _ in range(crops)]
    masks[0][0] = False  # an image with no masked patch
    center = rng.normal(size=k).astype(np.float32) * 0.3
    return student, teacher, masks, center


@pytest.mark.parametrize(
    ("crops", "b", "n", "k", "student_temp", "teacher_temp"),
    [(2, 3, 5, 7, 0.1, 0.04), (1, 4, 4, 3, 0.2, 0.07), (2, 2, 9, 5, 0.5, 0.3)],
)
def test_ibot_patch_loss_matches_numpy(crops, b, n, k, student_temp, teacher_temp):
    student, teacher, masks, center = inputs(b * n + k, crops, b, n, k)
    kw = dict(student_temp=student_temp, teacher_temp=teacher_temp)

    def fn(s, t, c):
        return ibot_patch_loss(s, t, masks, c, **kw)

    value, (g_s, g_t, g_c) = jax.value_and_grad(fn, argnums=(0, 1, 2))(student, teacher, center)
    ref = lambda *s: np_patch_loss(s, teacher, masks, center, student_temp, teacher_temp)
    np.testing.assert_allclose(value, ref(*student), rtol=2e-5)
    for g, want in zip(g_s, fd_grad(ref, student), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=2e-5)
    # Unmasked patches and the teacher / centre get no gradient.
    for g, m in zip(g_s, masks, strict=True):
        np.testing.assert_array_equal(np.asarray(g)[~m], 0.0)
    for g in (*g_t, g_c):
        np.testing.assert_array_equal(g, 0.0)
    np.testing.assert_allclose(jax.jit(fn)(student, teacher, center), value, rtol=1e-6)


def test_ibot_patch_loss_properties():
    student, teacher, masks, center = inputs(0, 2, 4, 6, 5)
    # Centering: a shift of the teacher that the centre removes changes nothing.
    shift = np.arange(5.0, dtype=np.float32)
    np.testing.assert_allclose(
        ibot_patch_loss(student, [t + shift for t in teacher], masks, center + shift),
        ibot_patch_loss(student, teacher, masks, center),
        rtol=1e-5,
    )
    # Nothing masked: the loss is 0 (no target), whatever the outputs.
    none = [np.zeros_like(m) for m in masks]
    assert float(ibot_patch_loss(student, teacher, none, center)) == 0.0
    # A student that matches the sharpened teacher reaches the teacher's entropy, the minimum.
    log_q = [jax.nn.log_softmax((t - center) / 0.04, axis=-1) for t in teacher]
    matched = [(t - center) * 0.1 / 0.04 for t in teacher]
    every = [np.ones_like(m) for m in masks]
    entropy = np.mean([-jnp.mean(jnp.sum(jnp.exp(x) * x, axis=-1)) for x in log_q])
    np.testing.assert_allclose(ibot_patch_loss(matched, teacher, every, center), entropy, rtol=1e-4)
    assert ibot_patch_loss(student, teacher, every, center) > entropy


@pytest.mark.parametrize("mode", MODES)
def test_ibot_patch_loss_distributed(mesh, mode):
    student, teacher, masks, center = inputs(5, 2, 16, 3, 4)
    masks = [m.astype(np.float32) for m in masks]

    def loss(s0, s1, t0, t1, m0, m1, axis_name=None):
        value = ibot_patch_loss([s0, s1], [t0, t1], [m0, m1], center, axis_name=axis_name)
        return value, {}

    args = (*student, *teacher, *masks)
    check_distributed(loss, args, mesh, mode, zero_grads=(2, 3, 4, 5))


def test_ibot_patch_loss_errors():
    s = jnp.ones((2, 3, 4))
    m = jnp.ones((2, 3), bool)
    c = jnp.zeros(4)
    with pytest.raises(ValueError, match="list of arrays"):
        ibot_patch_loss(s, [s], [m], c)
    with pytest.raises(ValueError, match="one student, teacher and mask per global crop"):
        ibot_patch_loss([s, s], [s], [m, m], c)
    with pytest.raises(ValueError, match="student_patch\\[0\\] must have rank 3"):
        ibot_patch_loss([jnp.ones((2, 4))], [s], [m], c)
    with pytest.raises(ValueError, match="masks must be"):
        ibot_patch_loss([s], [s], [jnp.ones((2, 4), bool)], c)
    with pytest.raises(ValueError, match="same shape"):
        ibot_patch_loss([s], [jnp.ones((2, 3, 5))], [m], c)
    with pytest.raises(ValueError, match="center must have shape"):
        ibot_patch_loss([s], [s], [m], jnp.zeros(5))
    with pytest.raises(ValueError, match="teacher_temp must be > 0"):
        ibot_patch_loss([s], [s], [m], c, teacher_temp=0.0)
    with pytest.raises(ValueError, match="at least one crop"):
        ibot_patch_loss([], [], [], c)
