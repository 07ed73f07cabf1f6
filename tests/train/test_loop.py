"""End-to-end training loop: checkpoints, logs, pmap == jit, NaN stop (resume bit-identity:
test_multi_step.py, test_faults.py)."""

import json

import jax
import numpy as np
import pytest

from ssl_jax.train import loop
from tests.conftest import load_config


def _config(subset, data_dir, method="simclr", **train):
    c = load_config(f"{method}_cifar10.py", "tiny")
    c.data.dataset = f"folder:{subset}"
    c.data.data_dir = str(data_dir)
    c.data.batch_size = 16
    c.train.num_steps = 6
    c.train.checkpoint_every = 3
    c.eval.max_train_examples = 0
    for k, v in train.items():
        c.train[k] = v
    return c


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]


def test_train_writes_checkpoints_and_metrics(cifar_subset_dir, tiny_data_dir, tmp_path):
    c = _config(cifar_subset_dir, tiny_data_dir)
    state = loop.train(c, tmp_path)
    assert int(state.step) == 6
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == 6 and 3 in steps
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(6))
    for key in ("loss", "nt_xent", "learning_rate", "embedding_std", "alignment", "uniformity"):
        assert all(np.isfinite(r[key]) for r in rows), key
    assert (tmp_path / "config.json").exists()
    assert any((tmp_path / "tensorboard").iterdir())


@pytest.mark.slow
def test_pmap_path_gives_same_losses_as_jit(cifar_subset_dir, tiny_data_dir, tmp_path):
    c = _config(cifar_subset_dir, tiny_data_dir, num_steps=2, checkpoint_every=1000)
    loop.train(c, tmp_path / "jit")
    c.train.use_pmap = True
    loop.train(c, tmp_path / "pmap")
    rows = {
        name: [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("jit", "pmap")
    }
    for a, b in zip(rows["jit"], rows["pmap"], strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-4)
        np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=2e-3)


def test_nonfinite_loss_stops_naming_the_step(cifar_subset_dir, tiny_data_dir, tmp_path):
    c = _config(cifar_subset_dir, tiny_data_dir, num_steps=4, checkpoint_every=1)
    c.optim.name = "sgd"
    c.optim.base_lr = 1e30
    with pytest.raises(loop.NonFiniteLossError, match=r"non-finite value at step \d"):
        loop.train(c, tmp_path)
    # Whatever was checkpointed before the stop is finite.
    ckpts = [p for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    trainer = loop.Trainer(c, tmp_path)
    if ckpts:
        sample = next(trainer.batches(0))["image"]
        state = trainer.restore_or_init(sample)
        assert all(np.isfinite(x).all() for x in _leaves(state.params))


def test_skip_nonfinite_keeps_training(cifar_subset_dir, tiny_data_dir, tmp_path):
    c = _config(cifar_subset_dir, tiny_data_dir, num_steps=3, skip_nonfinite=True)
    c.optim.name = "sgd"
    c.optim.base_lr = 1e30
    state = loop.train(c, tmp_path)
    assert int(state.step) == 3
    assert int(state.nonfinite_step) >= 0
    assert all(np.isfinite(x).all() for x in _leaves(state.params))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(method="simclrr"), "Did you mean 'simclr'"),
        (dict(batch_size=12), "not divisible by the 8 devices"),
        (dict(dataset="folder:/nonexistent/images"), "/nonexistent/images"),
    ],
)
def test_bad_configs_fail_before_compiling(
    cifar_subset_dir, tiny_data_dir, tmp_path, change, message
):
    c = _config(cifar_subset_dir, tiny_data_dir)
    if "method" in change:
        c.method = change["method"]
    if "batch_size" in change:
        c.data.batch_size = change["batch_size"]
    if "dataset" in change:
        c.data.dataset = change["dataset"]
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        loop.Trainer(c, tmp_path)
