"""DINO through the shared step on 8 devices: EMA teacher, center, temperatures, freezing."""

import numpy as np
import pytest

from ssl_jax.methods import DINO, SiameseNet, teacher_temperature
from ssl_jax.methods.common import multi_crop_forward, split_views
from tests.methods import harness, numpy_ref

STEPS = 3


@pytest.fixture(scope="module")
def dino_run():
    # tiny: 2 x 32px + 2 x 16px crops, 64 outputs; 2 steps per epoch, so the teacher
    # temperature warms up over 4 steps and the last layer is frozen for 2.
    return harness.run(harness.tiny_config("dino"), num_steps=STEPS)


def outputs(r, i, params, stats, num_views=None):
    views = list(harness.step_views(r, i))[:num_views]
    _, z, _ = harness.forward_train(
        r.method.net, params, stats, views, method=multi_crop_forward, train=True
    )
    return [np.asarray(x, np.float64) for x in split_views(z, len(views))]


def np_teacher_temp(k, warmup, final, steps):
    return final if steps == 0 else warmup + (final - warmup) * min(k / steps, 1.0)


def test_dino_trains_with_ema_teacher_and_schedules(dino_run):
    r = dino_run
    m = r.method
    assert isinstance(m, DINO)
    assert (m.warmup_teacher_temp_steps, m.freeze_last_layer_steps, m.total_steps) == (4, 2, 4)
    harness.assert_trains(r)
    # The teacher is the EMA of the whole student (no predictor to leave out).
    harness.assert_ema(r, lambda p: p)
    for i, x in enumerate(r.metrics):
        want = np_teacher_temp(i, 0.04, 0.07, 4)
        np.testing.assert_allclose(x["teacher_temp"], want, rtol=1e-6)
        assert 0.0 <= x["teacher_entropy"] <= np.log(64) + 1e-5


def test_dino_center_and_loss_match_numpy(dino_run):
    r = dino_run
    for i in range(STEPS):
        s = r.states[i]
        aux = s.aux
        teacher = outputs(r, i, aux["target_params"], aux["target_batch_stats"], num_views=2)
        center = np.asarray(aux["center"], np.float64)
        # Caron et al. Eq. 4: c <- m c + (1 - m) mean over the batch of both global crops.
        want_center = 0.9 * center + 0.1 * np.concatenate(teacher).mean(0)
        np.testing.assert_allclose(r.states[i + 1].aux["center"], want_center, atol=2e-6)
        student = outputs(r, i, s.params, s.batch_stats)
        assert len(student) == 4
        want = numpy_ref.dino(student, teacher, center, 0.1, r.metrics[i]["teacher_temp"])
        np.testing.assert_allclose(r.metrics[i]["dino"], want, rtol=2e-4, atol=1e-5)


def test_dino_last_layer_frozen_for_the_first_steps(dino_run):
    r = dino_run

    def direction(s):
        v = np.asarray(s.params["projector"]["last_layer"]["kernel"])
        return v / np.linalg.norm(v, axis=0)

    # Weight-normalised: only the direction of each column matters; weight decay on a zero
    # gradient only rescales it.
    np.testing.assert_allclose(direction(r.states[1]), direction(r.states[0]), atol=1e-6)
    np.testing.assert_allclose(direction(r.states[2]), direction(r.states[0]), atol=1e-6)
    assert np.abs(direction(r.states[3]) - direction(r.states[2])).max() > 5e-6


@pytest.mark.parametrize("steps", [0, 1, 7])
def test_teacher_temperature_schedule(steps):
    ks = np.arange(0, 12)
    got = [
        float(teacher_temperature(int(k), warmup=0.04, final=0.07, warmup_steps=steps)) for k in ks
    ]
    want = [np_teacher_temp(int(k), 0.04, 0.07, steps) for k in ks]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ValueError, match="warmup_steps"):
        teacher_temperature(0, warmup=0.04, final=0.07, warmup_steps=-1)


def test_dino_rejects_bad_arguments():
    from ssl_jax.models import MLP, ConvNet

    def view_fn(key, x):
        return [x, x]

    enc, head = ConvNet(widths=(8,)), MLP(hidden_dims=[8], out_dim=4)
    with pytest.raises(ValueError, match="no predictor"):
        DINO(view_fn=view_fn, net=SiameseNet(enc, head, head), total_steps=4)
    with pytest.raises(ValueError, match="num_global_crops"):
        DINO(view_fn=view_fn, net=SiameseNet(enc, head), total_steps=4, num_global_crops=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        DINO(
            view_fn=view_fn, net=SiameseNet(enc, head), total_steps=4, warmup_teacher_temp_steps=-2
        )
