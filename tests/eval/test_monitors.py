"""Evaluation-time collapse monitors for one-view (rotation) and two-view (SimCLR) recipes:
the alignment pair is two independent augmentations of each test image."""

import jax
import numpy as np
import pytest

from ssl_jax import build, evaluate, metrics
from tests.conftest import load_config


@pytest.mark.parametrize("method_name", ["rotation", "simclr"])
def test_monitors_compare_two_augmentations(method_name):
    c = load_config(f"{method_name}_cifar10.py", "tiny")
    method = build.method(c, num_train_examples=64)
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    variables = method.init(jax.random.key(0), images)
    out = evaluate._monitors(c, method, variables, images, seed=1)
    assert set(out) == {"std", "eff_rank", "alignment", "uniformity"}
    assert all(np.isfinite(v) for v in out.values())

    # Recompute the pair independently: the first view of two draws with the monitor's keys.
    keys = jax.random.split(jax.random.key(1), (2, 16))
    views = [jax.jit(method.views)(keys[i], images) for i in range(2)]
    v1 = views[0][0]
    v2 = views[0][1] if len(views[0]) >= 2 else views[1][0]
    enc = jax.jit(lambda x: method.encode(variables["params"], variables["batch_stats"], x))
    z1, z2 = enc(v1), enc(v2)
    assert out["alignment"] > 0.0  # two different augmentations, not one view twice
    np.testing.assert_allclose(out["alignment"], metrics.alignment(z1, z2), rtol=1e-4)
    np.testing.assert_allclose(out["std"], metrics.embedding_std(z1), rtol=1e-4)
