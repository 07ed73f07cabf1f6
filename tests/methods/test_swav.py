"""SwAV through the shared step on 8 devices: prototypes, freezing, queue, loss, pmap."""

import numpy as np
import pytest

from ssl_jax.methods import PrototypeHead, SiameseNet, SwAV
from ssl_jax.methods.common import multi_crop_forward, split_views
from tests.methods import harness, numpy_ref

STEPS = 3


@pytest.fixture(scope="module")
def swav_run():
    # tiny: 2 x 32px + 2 x 16px crops, 32 prototypes, a 32-row queue from step 0, prototypes
    # frozen for 1 epoch = 2 steps (32 examples at batch 16).
    return harness.run(harness.tiny_config("swav"), num_steps=STEPS)


def kernel(state):
    return np.asarray(state.params["predictor"]["prototypes"]["kernel"])


def forward(r, i):
    s = r.states[i]
    views = harness.step_views(r, i)
    _, z, scores = harness.forward_train(
        r.method.net, s.params, s.batch_stats, list(views), method=multi_crop_forward, train=True
    )
    split = [np.asarray(x, np.float64) for x in split_views(z, len(views))]
    return split, [np.asarray(x, np.float64) for x in split_views(scores, len(views))]


def test_swav_trains_and_prototypes_stay_unit_norm_and_frozen(swav_run):
    r = swav_run
    m = r.method
    assert isinstance(m, SwAV)
    assert (m.freeze_prototypes_steps, m.queue_size, m.queue_start_step) == (2, 32, 0)
    assert len(harness.step_views(r, 0)) == 4
    harness.assert_trains(r)
    for s in r.states:
        np.testing.assert_allclose(np.linalg.norm(kernel(s), axis=0), 1.0, atol=1e-5)
    # Frozen for steps 0 and 1: unchanged (weight decay only scales them, renormalised away).
    np.testing.assert_allclose(kernel(r.states[1]), kernel(r.states[0]), atol=1e-6)
    np.testing.assert_allclose(kernel(r.states[2]), kernel(r.states[0]), atol=1e-6)
    # Then they move (LARS steps on unit-norm columns are small: ~1e-5 per entry here).
    assert np.abs(kernel(r.states[3]) - kernel(r.states[2])).max() > 5e-6
    assert [x["prototypes_frozen"] for x in r.metrics] == [1.0, 1.0, 0.0]


def test_swav_queue_holds_past_embeddings_and_joins_sinkhorn(swav_run):
    r = swav_run
    n = harness.BATCH
    assert [int(s.aux["queue_filled"]) for s in r.states] == [0, 16, 32, 32]
    # Used once full (from the 3rd step on), never before.
    assert [x["queue_in_use"] for x in r.metrics] == [0.0, 0.0, 1.0]
    for i in range(STEPS):
        z, _ = forward(r, i)
        old, new = r.states[i].aux["queue"], r.states[i + 1].aux["queue"]
        for crop in range(2):
            # Newest first: this batch's normalised embeddings, then the older rows.
            np.testing.assert_allclose(new[crop, :n], numpy_ref.normalize(z[crop]), atol=2e-5)
            np.testing.assert_array_equal(new[crop, n:], old[crop, : 32 - n])


def test_swav_logged_loss_matches_numpy(swav_run):
    r = swav_run
    m = r.method
    for i in (0, 2):
        _, scores = forward(r, i)
        queue_scores = None
        if r.metrics[i]["queue_in_use"]:
            queue = np.asarray(r.states[i].aux["queue"], np.float64)
            queue_scores = [queue[c] @ kernel(r.states[i]) for c in range(2)]
        want = numpy_ref.swav(
            scores, m.temperature, m.epsilon, m.sinkhorn_iters, queue_scores=queue_scores
        )
        np.testing.assert_allclose(r.metrics[i]["swav"], want, rtol=2e-4)


def test_swav_pmap_matches_jit(swav_run):
    c = harness.tiny_config("swav", **{"train.use_pmap": True})
    metrics, state = harness.run_pmap(c, num_steps=STEPS)
    for a, b in zip(swav_run.metrics, metrics, strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-4)
        assert a["queue_in_use"] == b["queue_in_use"]
    np.testing.assert_allclose(state.aux["queue"], swav_run.states[-1].aux["queue"], atol=1e-4)


def test_swav_rejects_bad_arguments():
    from ssl_jax.models import MLP, ConvNet

    def view_fn(key, x):
        return [x, x]

    enc, proj = ConvNet(widths=(8,)), MLP(hidden_dims=[8], out_dim=4)
    with pytest.raises(ValueError, match="PrototypeHead"):
        SwAV(view_fn=view_fn, net=SiameseNet(enc, proj))
    net = SiameseNet(enc, proj, PrototypeHead(5))
    with pytest.raises(ValueError, match="queue_size"):
        SwAV(view_fn=view_fn, net=net, queue_size=-1)
