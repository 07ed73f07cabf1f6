"""Jigsaw puzzles through the shared step on 8 devices (and pmap): the puzzles it trained on,
its loss and accuracy against numpy, whole-image encode. (The gradient of the shared
``PatchClassification`` loss is checked in test_patch_position.py.)"""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.augment import patches
from ssl_jax.augment.permutations import maximal_hamming_permutations
from ssl_jax.methods import Jigsaw, LateFusionNet
from ssl_jax.methods.common import per_example_keys
from tests.methods import harness, numpy_ref


@pytest.fixture(scope="module")
def run():
    return harness.run(harness.tiny_config("jigsaw"), num_steps=2)


def np_standardize(x):
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=(-3, -2, -1), keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=(-3, -2, -1), keepdims=True) + 1e-5)


def test_jigsaw_trains_on_shuffled_tiles_with_the_numpy_loss(run):
    r, m = run, run.method
    assert isinstance(m, Jigsaw) and isinstance(m.net, LateFusionNet)
    c = r.config.jigsaw
    perms = maximal_hamming_permutations(c.num_permutations, num_tiles=4, seed=c.permutation_seed)
    assert sorted(map(tuple, perms)) == sorted(itertools.permutations(range(4)))
    np.testing.assert_array_equal(np.asarray(m.permutations), perms)
    geometry = (m.grid, m.cell_size, m.gap, m.jitter, m.tile_size, m.input_size, m.tile_norm)
    assert geometry == (2, None, 12, 1, 9, 16, "none")
    harness.assert_trains(r)
    n, k = harness.BATCH, len(perms)
    inputs = harness.fast_jit(m.inputs)
    puzzles = harness.fast_jit(
        jax.vmap(
            lambda key, v: patches.jigsaw_puzzle(
                key, v, jnp.asarray(perms), tile_size=9, grid=2, gap=12, jitter=1, tile_norm="none"
            )
        )
    )
    for i in range(2):
        s = r.states[i]
        (view,) = harness.step_views(r, i)
        keys = per_example_keys(harness.loss_key(r, i), n, None)
        x, labels = inputs(keys, view)
        assert x.shape == (n, 4, 16, 16, 3) and labels.shape == (n,)
        # Before resizing: jigsaw_puzzle's tiles of the step's views (not normalised).
        raw, raw_labels = puzzles(keys, view)
        np.testing.assert_array_equal(labels, raw_labels)
        resize = lambda t: jax.image.resize(t, (16, 16, 3), "linear")
        want_x = jax.vmap(jax.vmap(resize))(raw)
        np.testing.assert_allclose(x, want_x, atol=2e-5)
        h, logits = harness.forward_train(m.net, s.params, s.batch_stats, x)
        assert h.shape == (n, 4, m.net.encoder.num_features) and logits.shape == (n, k)
        logits = np.asarray(logits, np.float64)
        want = numpy_ref.cross_entropy(logits, np.asarray(labels))
        np.testing.assert_allclose(r.metrics[i]["jigsaw"], want, rtol=2e-4)
        np.testing.assert_allclose(r.metrics[i]["loss"], want, rtol=2e-4)
        acc = np.mean(np.argmax(logits, 1) == np.asarray(labels))
        np.testing.assert_allclose(r.metrics[i]["jigsaw_acc"], acc, atol=1.5 / n)


def test_jigsaw_pmap_matches_jit(run):
    """Per-example keys: pmap over 8 devices cuts the same puzzles as jit over the mesh."""
    c = harness.tiny_config("jigsaw", **{"train.use_pmap": True})
    metrics, _ = harness.run_pmap(c, num_steps=1)
    for a, b in zip(run.metrics[:1], metrics, strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)
        np.testing.assert_allclose(a["jigsaw_acc"], b["jigsaw_acc"], atol=1e-6)


def test_encode_standardises_whole_images_like_the_tiles(run):
    r = run
    s = r.states[-1]
    images = np.random.default_rng(0).normal(1.0, 2.0, size=(4, 32, 32, 3)).astype(np.float32)
    plain = r.method.net.encoder.apply(
        {"params": s.params["encoder"], "batch_stats": s.batch_stats["encoder"]},
        jnp.asarray(images),
        train=False,
    )
    # The config's tiles are not normalised, so neither are whole images.
    feats = harness.fast_jit(r.method.encode)(s.params, s.batch_stats, jnp.asarray(images))
    np.testing.assert_allclose(feats, plain, rtol=1e-4, atol=1e-5)
    m = dataclasses.replace(r.method, tile_norm="tile")
    encode = harness.fast_jit(lambda p, b, x: m.encode(p, b, x))
    feats = encode(s.params, s.batch_stats, jnp.asarray(images))
    assert feats.shape == (4, m.net.encoder.num_features)
    want = m.net.encoder.apply(
        {"params": s.params["encoder"], "batch_stats": s.batch_stats["encoder"]},
        jnp.asarray(np_standardize(images), jnp.float32),
        train=False,
    )
    np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-5)
    # Invariant to a per-image brightness / contrast change, as the tiles are.
    again = encode(s.params, s.batch_stats, jnp.asarray(3.0 * images - 0.5))
    np.testing.assert_allclose(feats, again, rtol=1e-3, atol=1e-4)


def test_jigsaw_rejects_bad_arguments():
    from ssl_jax import build_methods
    from ssl_jax.models import MLP, ConvNet

    enc = ConvNet(widths=(8,))

    def view_fn(key, x):
        return [x]

    perms = tuple(map(tuple, maximal_hamming_permutations(4).tolist()))
    net = LateFusionNet(encoder=enc, head=MLP([8], 4))
    kw = dict(view_fn=view_fn, net=net, cell_size=10, tile_size=9)
    Jigsaw(permutations=perms, **kw)
    with pytest.raises(ValueError, match="3 outputs"):
        Jigsaw(permutations=perms[:3], **kw)
    with pytest.raises(ValueError, match="repeat"):
        Jigsaw(permutations=(*perms[:3], perms[0]), **kw)
    with pytest.raises(ValueError, match=r"permutations of 0\.\.8"):
        Jigsaw(permutations=((0,) * 9, *perms[1:]), **kw)
    with pytest.raises(ValueError, match="tile_norm"):
        Jigsaw(permutations=perms, tile_norm="image", **kw)
    with pytest.raises(ValueError, match="tile_size"):
        Jigsaw(permutations=perms, **{**kw, "tile_size": 11})
    with pytest.raises(ValueError, match="exactly one of cell_size"):
        Jigsaw(permutations=perms, gap=1, **kw)
    with pytest.raises(ValueError, match="exactly one of cell_size"):
        Jigsaw(permutations=perms, view_fn=view_fn, net=net, tile_size=9)
    with pytest.raises(ValueError, match="jitter applies to spaced tiles"):
        Jigsaw(permutations=perms, jitter=1, **kw)
    with pytest.raises(ValueError, match="gap must be an integer >= 0"):
        Jigsaw(permutations=perms, view_fn=view_fn, net=net, tile_size=9, gap=-1)
    c = harness.tiny_config("jigsaw", **{"jigsaw.channel_shift": 2})
    with pytest.raises(
        ValueError,
        match=r"a 2x2 grid of 9-px tiles \(spaced: gap 12, jitter 1\) with channel shift 2 "
        "needs 36-px",
    ):
        build_methods.jigsaw(c, 100)
    c = harness.tiny_config("jigsaw", **{"jigsaw.placement": "grid"})
    with pytest.raises(ValueError, match=r"jigsaw\.placement must be one of"):
        build_methods.jigsaw(c, 100)


def test_config_placement_cells_builds_the_papers_cells():
    from ssl_jax import build_methods

    c = harness.tiny_config("jigsaw", **{"jigsaw.placement": "cells", "jigsaw.tile_size": 14})
    m = build_methods.jigsaw(c, 100)
    assert (m.cell_size, m.gap, m.jitter, m.tile_size) == (16, None, 0, 14)
