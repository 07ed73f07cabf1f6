"""Several steps per compiled call (``train.steps_per_call``): the same states and metrics as
one step per call (up to float rounding), through ``jit`` on 8 devices, ``pmap`` and the
loop; a run resumed from its checkpoint equals the uninterrupted one bit for bit."""

import json

import flax.jax_utils
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import build, data
from ssl_jax import config as cfg
from ssl_jax.config import validate
from ssl_jax.train import loop
from ssl_jax.train.state import create_train_state
from ssl_jax.train.step import data_mesh, jit_step, make_step_fn, multi_step, pmap_step
from tests.methods.harness import NUM_TRAIN_EXAMPLES, images, tiny_config
from tests.train.test_loop import _config, _leaves


def _setup(method_name: str, axis_name=None):
    c = tiny_config(method_name)
    n = NUM_TRAIN_EXAMPLES
    method, tx = build.method(c, n), build.optimizer(c, n)
    probe_tx = optax.adam(1e-3)
    # Replicated over the mesh, as the loop places it: a single-device state would give the
    # jitted step a second input signature after its first call (a second compile).
    init = jax.jit(
        lambda k, x: create_train_state(method, tx, probe_tx, k, x, num_classes=10),
        out_shardings=NamedSharding(data_mesh(), P()),
    )
    state = init(jax.random.key(1), jnp.asarray(images(0)[0]))
    step_fn = make_step_fn(
        method, tx, probe_tx, lr_schedule=build.lr_schedule(c, n), axis_name=axis_name
    )
    batches = [dict(zip(("image", "label"), images(10 + i), strict=True)) for i in range(2)]
    return state, step_fn, batches


def _stack(batches):
    return jax.tree.map(lambda *x: np.stack(x), *batches)


def _assert_equal(a, b):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _assert_close(a, b):
    # The larger program may sum in another order: float32 rounding, nothing more.
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method_name", ["simclr", "byol"])
def test_one_call_of_two_steps_equals_two_calls(method_name, n_devices):
    # Two steps are enough to carry the state (BYOL's EMA target too) from one step to the
    # next inside a call; each extra unrolled step adds to the compile time only.
    state, step_fn, batches = _setup(method_name)
    mesh, key = data_mesh(), jax.random.key(2)
    single, double = jit_step(step_fn, mesh), jit_step(step_fn, mesh, steps_per_call=2)

    one_by_one, metrics = jax.tree.map(jnp.copy, state), []
    for b in batches:
        one_by_one, m = single(one_by_one, data.to_global(b, mesh), key)
        metrics.append(jax.device_get(m))
    stacked = data.to_global(_stack(batches), mesh, batch_dim=1)
    assert stacked["image"].sharding.spec == P(None, "data")
    together, m2 = double(state, stacked, key)

    assert int(together.step) == 2
    _assert_close(one_by_one, together)
    m2 = jax.device_get(m2)
    assert set(m2) == set(metrics[0])
    for k, v in m2.items():
        assert v.shape == (2,), k
        np.testing.assert_allclose(v, [m[k] for m in metrics], rtol=1e-4, atol=1e-6, err_msg=k)


def test_pmap_call_of_two_steps_equals_two_calls(n_devices):
    state, step_fn, batches = _setup("simclr", axis_name=build.PMAP_AXIS)
    key = jax.random.key(2)
    single = pmap_step(step_fn, axis_name=build.PMAP_AXIS)
    double = pmap_step(step_fn, axis_name=build.PMAP_AXIS, steps_per_call=2)

    def split(x):  # [B, ...] -> [devices, B / devices, ...]
        return x.reshape(n_devices, -1, *x.shape[1:])

    one_by_one, losses = flax.jax_utils.replicate(state), []
    for b in batches:
        one_by_one, m = single(one_by_one, jax.tree.map(split, b), key)
        losses.append(float(m["loss"][0]))
    # [2, B, ...] -> [devices, 2, B / devices, ...]
    stacked = jax.tree.map(
        lambda x: np.moveaxis(split(np.moveaxis(x, 0, 1)), 1, 2), _stack(batches)
    )
    together, m2 = double(flax.jax_utils.replicate(state), stacked, key)

    assert m2["loss"].shape == (n_devices, 2)
    np.testing.assert_allclose(np.asarray(m2["loss"][0]), losses, rtol=1e-5)
    unrep = flax.jax_utils.unreplicate
    _assert_close(unrep(one_by_one), unrep(together))


def test_unstacked_batch_is_refused():
    state, step_fn, batches = _setup("simclr")
    with pytest.raises(ValueError, match=r"batch\['image'\] has shape \(16, 32, 32, 3\).*of 3"):
        jax.jit(multi_step(step_fn, 3))(state, batches[0], jax.random.key(2))
    with pytest.raises(ValueError, match="num_steps must be an int >= 1"):
        multi_step(step_fn, 0)


def test_calls_start_at_multiples_of_steps_per_call():
    sizes = []
    step = 0
    while step < 11:
        sizes.append(loop._call_size(step, 4, 11))
        step += sizes[-1]
    assert sizes == [4, 4, 1, 1, 1]
    # Resumed at an odd step: single steps up to the next multiple, then the same calls.
    assert [loop._call_size(s, 4, 12) for s in (5, 6, 7, 8)] == [1, 1, 1, 4]
    assert loop._call_size(0, 1, 3) == 1


@pytest.mark.parametrize(
    ("steps_per_call", "checkpoint_every", "message"),
    [
        (-4, 4, r"steps_per_call must be an integer >= 0 \(0: auto\), got -4"),
        (True, 4, r"steps_per_call must be an integer >= 0 \(0: auto\), got True"),
        (4, 6, "checkpoint_every=6 is not a multiple of train.steps_per_call=4"),
    ],
)
def test_bad_steps_per_call_is_refused(steps_per_call, checkpoint_every, message):
    c = tiny_config("simclr")
    c.train.steps_per_call = steps_per_call
    c.train.checkpoint_every = checkpoint_every
    with pytest.raises(ValueError, match=message):
        validate(c, num_devices=8)


def test_auto_steps_per_call_divides_checkpoint_every():
    c = tiny_config("simclr")
    assert c.train.steps_per_call == 1  # tiny runs: one step per call, see config.make_tiny
    c.train.steps_per_call = 0
    for every, cpu in ((1000, 4), (6, 2), (3, 1)):
        c.train.checkpoint_every = every
        validate(c, num_devices=8)
        assert cfg.steps_per_call(c, "cpu") == cpu
        assert cfg.steps_per_call(c, "gpu") == cfg.steps_per_call(c, "tpu") == 1
    c.train.steps_per_call = 3
    assert cfg.steps_per_call(c, "gpu") == 3


@pytest.mark.slow
def test_loop_resumes_bit_identically_with_one_or_two_steps_per_call(
    cifar_subset_dir, tiny_data_dir, tmp_path
):
    # BYOL (an EMA target in the state), 5 steps, a checkpoint every 2.
    c = _config(cifar_subset_dir, tiny_data_dir, method="byol", num_steps=5, checkpoint_every=2)
    c.train.steps_per_call = 1
    straight = loop.train(c, tmp_path / "one")
    # Stopped at step 3 (checkpointed there, between the regular ones), then resumed: the
    # same state as the uninterrupted run, bit for bit.
    assert int(loop.Trainer(c, tmp_path / "one_resumed").run(stop_at=3).step) == 3
    one_resumed = loop.Trainer(c, tmp_path / "one_resumed").run()
    assert int(one_resumed.step) == 5
    _assert_equal(straight, one_resumed)
    # 2 per call: calls of 2, 2, 1; checkpoints at 2, 4 and 5.
    c.train.steps_per_call = 2
    grouped = loop.train(c, tmp_path / "two")
    # Asked to stop at step 3, inside a call: it stops after that call, at step 4.
    first = loop.Trainer(c, tmp_path / "resumed").run(stop_at=3)
    assert int(first.step) == 4
    resumed = loop.Trainer(c, tmp_path / "resumed").run()

    assert int(grouped.step) == int(resumed.step) == 5
    _assert_close(straight, grouped)
    _assert_equal(grouped, resumed)
    rows = {
        name: [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("one", "two")
    }
    assert [r["step"] for r in rows["two"]] == list(range(5))
    for a, b in zip(rows["one"], rows["two"], strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-4, atol=1e-6)
    ckpts = sorted(int(p.name) for p in (tmp_path / "two" / "checkpoints").iterdir())
    assert ckpts == [2, 4, 5]
