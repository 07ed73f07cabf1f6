"""DINO loss and center update against plain numpy (float64), from the paper and DINOLoss.

The teacher side is a constant in DINO (stop-gradient), so reference gradients are finite
differences with respect to the student outputs only, and the teacher/center get none.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import dino_center_update, dino_loss
from tests.losses.helpers import fd_grad


def np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_dino_loss(student, teacher, center, student_temp, teacher_temp):
    """Eq. 3 / ``DINOLoss.forward``: H(P_t(x), P_s(x')) over pairs x != x', mean of means."""
    total, n_terms = 0.0, 0
    for iq, t in enumerate(teacher):
        p_t = np_softmax((t - center) / teacher_temp)
        for v, s in enumerate(student):
            if v == iq:
                continue
            log_p_s = np.log(np_softmax(s / student_temp))
            total += np.mean(-np.sum(p_t * log_p_s, axis=1))
            n_terms += 1
    return total / n_terms


def rand(key, n, b, k, scale=1.0):
    return [np.asarray(x) for x in scale * jax.random.normal(jax.random.key(key), (n, b, k))]


@pytest.mark.parametrize(
    ("n_local", "b", "k", "student_temp", "teacher_temp"),
    [(4, 3, 6, 0.1, 0.04), (0, 5, 4, 0.1, 0.07), (2, 4, 5, 0.5, 0.2)],
)
def test_dino_loss_matches_numpy(n_local, b, k, student_temp, teacher_temp):
    student = rand(b * k + n_local, 2 + n_local, b, k)
    teacher = rand(b * k + 100, 2, b, k)
    center = rand(b * k + 200, 1, 1, k)[0][0]
    n_s = len(student)

    def fn(*args):
        return dino_loss(
            list(args[:n_s]),
            list(args[n_s:-1]),
            args[-1],
            student_temp=student_temp,
            teacher_temp=teacher_temp,
        )

    args = [*student, *teacher, center]
    value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
    ref = lambda *s: np_dino_loss(s, teacher, center, student_temp, teacher_temp)
    np.testing.assert_allclose(value, ref(*student), rtol=2e-5)
    for g, g_ref in zip(grads[:n_s], fd_grad(ref, student), strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=2e-5)
    for g in grads[n_s:]:
        np.testing.assert_array_equal(g, 0.0)
    np.testing.assert_allclose(jax.jit(fn)(*args), value, rtol=1e-6)


def test_dino_loss_properties():
    student = rand(0, 4, 6, 5)
    teacher = student[:2]
    center = jnp.zeros(5)
    # Same-view pairs are skipped: changing student crop 0 leaves the (teacher 0, student 0)
    # pair out, so the loss must depend on student[0] only through teacher 1's term.
    g = jax.grad(lambda s0: dino_loss([s0, *student[1:]], teacher, center))(student[0])
    # The one pair with s0: teacher crop 0 here is teacher[1], student crop 0 is skipped.
    single = jax.grad(lambda s0: dino_loss([student[1], s0], [teacher[1]], center))(student[0])
    # dino_loss averages over 2*4-2 = 6 pairs; the single-pair loss over 1.
    np.testing.assert_allclose(g, single / 6, rtol=1e-5, atol=1e-7)
    # Centering: a constant shift of the teacher that the center removes changes nothing.
    shift = jnp.arange(5.0)
    np.testing.assert_allclose(
        dino_loss(student, [t + shift for t in teacher], shift),
        dino_loss(student, teacher, center),
        rtol=1e-5,
    )
    # When both teacher crops agree, a student matching the sharpened teacher on every crop
    # reaches the minimum, the teacher's entropy, and beats a random student.
    same = [teacher[0], teacher[0]]
    p_t = jax.nn.softmax(teacher[0] / 0.04)
    entropy = -jnp.mean(jnp.sum(p_t * jax.nn.log_softmax(teacher[0] / 0.04), axis=1))
    matched = dino_loss([teacher[0] * 0.1 / 0.04] * 4, same, center)
    np.testing.assert_allclose(matched, entropy, rtol=1e-4, atol=1e-6)
    assert matched < dino_loss(student, same, center)


def test_dino_loss_errors():
    s = jnp.ones((4, 3))
    c = jnp.zeros(3)
    with pytest.raises(ValueError, match="list of"):
        dino_loss(jnp.ones((2, 4, 3)), [s, s], c)
    with pytest.raises(ValueError, match="center must have shape"):
        dino_loss([s, s], [s, s], jnp.zeros(4))
    with pytest.raises(ValueError, match="center must have rank 1"):
        dino_loss([s, s], [s, s], jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match="teacher_out has 2 crops but student_out only 1"):
        dino_loss([s], [s, s], c)
    with pytest.raises(ValueError, match="at least 2 student crops"):
        dino_loss([s], [s], c)
    with pytest.raises(ValueError, match="student_out\\[0\\] and teacher_out\\[0\\]"):
        dino_loss([s, s], [jnp.ones((5, 3))], c)
    with pytest.raises(ValueError, match="student_out\\[0\\] and student_out\\[2\\]"):
        dino_loss([s, s, jnp.ones((4, 2))], [s], c)
    with pytest.raises(ValueError, match="teacher_temp must be > 0"):
        dino_loss([s, s], [s], c, teacher_temp=0.0)
    with pytest.raises(ValueError, match="student_temp must be > 0"):
        dino_loss([s, s], [s], c, student_temp=-0.1)


# -- center ------------------------------------------------------------------------------


@pytest.mark.parametrize(("b", "k", "momentum"), [(3, 4, 0.9), (7, 2, 0.5)])
def test_center_update_matches_numpy(b, k, momentum):
    teacher = rand(b + k, 2, b, k)
    center = rand(b * k, 1, 1, k)[0][0]
    batch_center = np.concatenate(teacher).astype(np.float64).mean(axis=0)
    expected = momentum * center + (1 - momentum) * batch_center
    out = dino_center_update(center, teacher, momentum=momentum)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)
    # One stacked [2B, K] array is the same as the list of crops.
    np.testing.assert_allclose(
        jax.jit(dino_center_update)(center, np.concatenate(teacher)),
        dino_center_update(center, teacher),
        rtol=1e-6,
    )


def test_center_converges_to_mean_and_has_no_gradient():
    teacher = rand(3, 2, 16, 4, scale=2.0)
    update = jax.jit(dino_center_update)
    center = jnp.zeros(4)
    for _ in range(200):
        center = update(center, teacher)
    np.testing.assert_allclose(center, np.concatenate(teacher).mean(axis=0), rtol=1e-5)
    g = jax.grad(lambda t: jnp.sum(dino_center_update(center, list(t))))(np.stack(teacher))
    np.testing.assert_array_equal(g, 0.0)
    assert dino_center_update(center.astype(jnp.bfloat16), teacher).dtype == jnp.bfloat16


def test_center_update_errors():
    t = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="momentum must be in"):
        dino_center_update(jnp.zeros(3), [t], momentum=1.5)
    with pytest.raises(ValueError, match="center must have shape"):
        dino_center_update(jnp.zeros(2), [t])
    with pytest.raises(ValueError, match="teacher_out\\[0\\] must have rank 2"):
        dino_center_update(jnp.zeros(3), [jnp.ones(3)])
    with pytest.raises(ValueError, match="at least one crop"):
        dino_center_update(jnp.zeros(3), [])
