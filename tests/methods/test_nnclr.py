"""NNCLR through the shared step on 8 devices: support-set queue, loss vs numpy, jit vs pmap."""

import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import augment, build
from ssl_jax import config as cfg
from ssl_jax.methods import NNCLR, SiameseNet
from tests.conftest import load_config
from tests.methods import harness, numpy_ref

QUEUE = 40  # 16 keys a step: the third step wraps around (32 + 16 > 40)


def np_nnclr_step(queue, z1, z2, p1, p2, t):
    """Dwibedi et al. 2021, Eq. 2 with predictor, symmetrised: NN by cosine in the support
    set, positive NN(z_i).p_i^+ against NN(z_i).p_k^+ over the batch; mean of 2 directions."""
    q = numpy_ref.normalize(queue)
    nn1 = queue[np.argmax(numpy_ref.normalize(z1) @ q.T, axis=1)]
    nn2 = queue[np.argmax(numpy_ref.normalize(z2) @ q.T, axis=1)]

    def direction(nn, p):
        logits = numpy_ref.normalize(nn) @ numpy_ref.normalize(p).T / t
        return -np.mean(np.diag(numpy_ref.log_softmax(logits)))

    return (direction(nn1, p2) + direction(nn2, p1)) / 2, nn1


@pytest.fixture(scope="module")
def jit_run():
    return harness.run(harness.tiny_config("nnclr", **{"nnclr.queue_size": QUEUE}), num_steps=3)


def test_nnclr_queue_and_loss(jit_run):
    r = jit_run
    m = r.method
    assert isinstance(m, NNCLR) and m.queue_size == QUEUE and m.temperature == 0.2
    harness.assert_trains(r)
    b = harness.BATCH
    q0 = r.states[0].aux["queue"]
    assert q0.shape == (QUEUE, 32) and int(r.states[0].aux["ptr"]) == 0
    np.testing.assert_allclose(np.linalg.norm(q0, axis=1), 1.0, atol=1e-5)  # random unit rows
    for i in range(3):
        old, new = r.states[i].aux, r.states[i + 1].aux
        views = harness.step_views(r, i)
        s = r.states[i]
        _, z, p = harness.forward_train(m.net, s.params, s.batch_stats, jnp.concatenate(views[:2]))
        z, p = np.asarray(z, np.float64), np.asarray(p, np.float64)
        # The logged loss uses the queue from BEFORE this step's update.
        want, nn1 = np_nnclr_step(old["queue"], z[:b], z[b:], p[:b], p[b:], m.temperature)
        np.testing.assert_allclose(r.metrics[i]["nnclr"], want, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(r.metrics[i]["loss"], want, rtol=2e-4, atol=2e-5)
        cos = np.mean(np.sum(numpy_ref.normalize(z[:b]) * numpy_ref.normalize(nn1), axis=1))
        np.testing.assert_allclose(r.metrics[i]["nn_cosine"], cos, atol=2e-5)
        # Then the view-1 projections, normalised, replace the oldest rows (FIFO, mod K).
        assert int(new["ptr"]) == (int(old["ptr"]) + b) % QUEUE
        rows = (int(old["ptr"]) + np.arange(b)) % QUEUE
        np.testing.assert_allclose(new["queue"][rows], numpy_ref.normalize(z[:b]), atol=2e-5)
        others = np.setdiff1d(np.arange(QUEUE), rows)
        np.testing.assert_array_equal(new["queue"][others], old["queue"][others])
    assert [int(s.aux["ptr"]) for s in r.states] == [0, 16, 32, 8]


def test_nnclr_pmap_matches_jit(jit_run):
    c = harness.tiny_config("nnclr", **{"nnclr.queue_size": QUEUE, "train.use_pmap": True})
    metrics, state = harness.run_pmap(c, num_steps=2)
    for a, b in zip(jit_run.metrics[:2], metrics, strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)
        np.testing.assert_allclose(a["nn_cosine"], b["nn_cosine"], rtol=1e-4)
    # Every device gathered the whole batch: the queue is the jit run's, in global order.
    np.testing.assert_allclose(state.aux["queue"], jit_run.states[2].aux["queue"], atol=1e-4)
    assert int(state.aux["ptr"]) == int(jit_run.states[2].aux["ptr"]) == 32


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet"])
def test_nnclr_configs(dataset):
    n = 50_000 if dataset == "cifar10" else 1_281_167
    for variant in ("", "tiny", "demo"):
        c = load_config(f"nnclr_{dataset}.py", variant)
        assert c.method == "nnclr"
        cfg.validate(c, num_devices=8)
        augment.view_sizes(c.augment.recipe, image_size=c.data.image_size)
        m = build.method(c, n)
        assert isinstance(m, NNCLR)
        assert m.net.projector.last_bn and m.net.projector.last_bn_affine
        build.optimizer(c, n)
    m = build.method(load_config(f"nnclr_{dataset}.py", ""), n)
    assert m.net.projector.hidden_dims == [2048, 2048] and m.net.projector.out_dim == 256
    assert m.net.predictor.hidden_dims == [4096]
    if dataset == "imagenet":
        assert (m.queue_size, m.temperature) == (98304, 0.1)
    else:
        assert (m.queue_size, m.temperature) == (65536, 0.2)


def test_nnclr_rejects_bad_arguments():
    from ssl_jax.models import MLP, ConvNet

    enc, head = ConvNet(widths=(8,)), MLP(hidden_dims=[8], out_dim=4)

    def view_fn(key, x):
        return [x, x]

    with pytest.raises(ValueError, match="predictor"):
        NNCLR(view_fn=view_fn, net=SiameseNet(enc, head))
    with pytest.raises(ValueError, match="queue_size"):
        NNCLR(view_fn=view_fn, net=SiameseNet(enc, head, head), queue_size=0)
    with pytest.raises(ValueError, match="temperature"):
        NNCLR(view_fn=view_fn, net=SiameseNet(enc, head, head), temperature=0.0)
