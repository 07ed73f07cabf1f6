"""View recipes: published parameters, make_views shapes/determinism, jit and Mesh sharding."""

import dataclasses

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import augment as A

# (global views, local views, global side, local side) of every preset.
LAYOUT = {
    "simclr": (2, 0, 224, 0),
    "moco_v2": (2, 0, 224, 0),
    "byol": (2, 0, 224, 0),
    "barlow_twins": (2, 0, 224, 0),
    "vicreg": (2, 0, 224, 0),
    "swav": (2, 6, 224, 96),
    "dino": (2, 8, 224, 96),
    "mae": (1, 0, 224, 0),
    "simclr_cifar": (2, 0, 32, 0),
    "moco_v2_cifar": (2, 0, 32, 0),
    "byol_cifar": (2, 0, 32, 0),
    "barlow_twins_cifar": (2, 0, 32, 0),
    "vicreg_cifar": (2, 0, 32, 0),
    "swav_cifar": (2, 6, 32, 16),
    "dino_cifar": (2, 8, 32, 16),
    "mae_cifar": (1, 0, 32, 0),
    "patch_tasks": (1, 0, 224, 0),
    "patch_tasks_cifar": (1, 0, 32, 0),
}


def _uint8(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_layout_of_every_preset(name):
    n_global, n_local, side, local_side = LAYOUT[name]
    sizes = A.view_sizes(name)
    assert [s for _, s in sizes] == [side] * n_global + [local_side] * n_local
    r = A.RECIPES[name]
    assert r.name == name and r.reference
    if name.endswith("_cifar"):
        assert all(v.blur_prob == 0 for v, _ in sizes)
        assert (r.mean, r.std) == (A.CIFAR10_MEAN, A.CIFAR10_STD)
    else:
        assert (r.mean, r.std) == (A.IMAGENET_MEAN, A.IMAGENET_STD)


def _colour(v: A.ViewSpec):
    return (v.brightness, v.contrast, v.saturation, v.hue, v.jitter_prob, v.grayscale_prob)


def test_published_parameters():
    R = A.RECIPES
    s = R["simclr"].global_views[0]
    assert _colour(s) == (0.8, 0.8, 0.8, 0.2, 0.8, 0.2) and s.scale == (0.08, 1.0)
    assert (s.blur_prob, s.blur_sigma, s.solarize_prob, s.flip_prob) == (0.5, (0.1, 2.0), 0.0, 0.5)
    assert _colour(R["simclr_cifar"].global_views[0])[:4] == (0.4, 0.4, 0.4, 0.1)  # strength 0.5
    m = R["moco_v2"].global_views[0]
    assert (
        _colour(m) == (0.4, 0.4, 0.4, 0.1, 0.8, 0.2)
        and m.scale == (0.2, 1.0)
        and m.blur_prob == 0.5
    )
    for name in ("byol", "barlow_twins", "vicreg"):
        v1, v2 = R[name].global_views
        assert _colour(v1) == _colour(v2) == (0.4, 0.4, 0.2, 0.1, 0.8, 0.2)
        assert (v1.blur_prob, v2.blur_prob, v1.solarize_prob, v2.solarize_prob) == (
            1.0,
            0.1,
            0.0,
            0.2,
        )
        assert v1.scale == (0.08, 1.0)
    assert R["byol"].global_views[0].brightness_mode == "additive"
    assert R["vicreg"].global_views[0].brightness_mode == "multiplicative"
    sw = R["swav"]
    assert sw.global_views[0].scale == (0.14, 1.0) and sw.local_view.scale == (0.05, 0.14)
    d = R["dino"]
    assert d.global_views[0].scale == (0.4, 1.0) and d.local_view.scale == (0.05, 0.4)
    assert [v.blur_prob for v in d.global_views] == [1.0, 0.1] and d.local_view.blur_prob == 0.5
    assert [v.solarize_prob for v in d.global_views] == [0.0, 0.2]
    mae = R["mae"].global_views[0]
    assert mae.scale == (0.2, 1.0) and _colour(mae) == (0, 0, 0, 0, 0, 0) and mae.blur_prob == 0
    for name in ("patch_tasks", "patch_tasks_cifar"):
        (p,) = R[name].global_views
        assert p.scale == (0.2, 1.0) and _colour(p) == (0, 0, 0, 0, 0, 0.66) and p.flip_prob == 0.5


# One compiled function shared by the tests below (compiling dominates their cost).
simclr_cifar_raw = jax.jit(lambda k, x: A.make_views("simclr_cifar", k, x, normalize=False))


@pytest.fixture(scope="module")
def batch():
    return _uint8((8, 32, 32, 3), seed=1)


@pytest.mark.parametrize(
    ("name", "kwargs", "sides"),
    [
        ("simclr_cifar", {}, [32, 32]),
        ("byol", {"image_size": 24}, [24, 24]),  # blur + solarise + additive brightness
        ("swav", {"image_size": 24, "num_local_crops": 2, "local_size": 12}, [24, 24, 12, 12]),
        ("mae_cifar", {}, [32]),
    ],
)
def test_make_views_under_jit(batch, name, kwargs, sides):
    fn = jax.jit(lambda k, x: A.make_views(name, k, x, **kwargs))
    views = fn(jax.random.key(0), batch)
    assert [v.shape for v in views] == [(8, s, s, 3) for s in sides]
    assert all(v.dtype == np.float32 and np.isfinite(np.asarray(v)).all() for v in views)
    again = fn(jax.random.key(0), batch)
    for a, b in zip(views, again, strict=True):
        np.testing.assert_array_equal(a, b)  # deterministic for a key
    other = fn(jax.random.key(1), batch)
    assert not np.allclose(views[0], other[0])  # other key, other views
    if len(views) > 1:
        assert not np.allclose(views[0], views[1])  # two different views
    r = A.get_recipe(name)
    for v in views:  # normalised with the recipe's statistics, from images in [0, 1]
        u = np.asarray(v) * np.array(r.std) + np.array(r.mean)
        assert u.min() >= -1e-5 and u.max() <= 1 + 1e-5
    if name == "swav":  # the two local crops share a trace but not their keys
        assert not np.allclose(views[2], views[3])


def test_make_views_is_per_image_recipe(batch):
    """View v of image i equals the documented per-image pipeline with its key."""
    recipe = A.RECIPES["simclr_cifar"]
    rng = jax.random.key(3)
    views = simclr_cifar_raw(rng, batch)
    spec = recipe.global_views[1]
    keys = jax.random.split(jax.random.fold_in(rng, 1), 8)
    i = 5
    k_crop, k_rest = jax.random.split(keys[i])
    x = A.random_resized_crop(k_crop, batch[i].astype(np.float32) / 255, 32, scale=spec.scale)
    k_flip, k_jit, k_gray, _, _ = jax.random.split(k_rest, 5)
    x = A.random_flip(k_flip, x, prob=0.5)
    x = A.random_color_jitter(
        k_jit, x, prob=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1
    )
    x = A.random_grayscale(k_gray, x, prob=0.2)
    np.testing.assert_allclose(views[1][i], x, atol=1e-5)


def test_identity_recipe_is_a_plain_resize(batch):
    # No crop range, no flip, no colour: the view is the image (only normalised).
    plain = A.ViewRecipe(
        "plain",
        (A.ViewSpec(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_prob=0.0),),
        32,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )
    (v,) = A.make_views(plain, jax.random.key(0), batch)
    np.testing.assert_allclose(v, batch / 255.0, atol=1e-5)


def test_sharded_batch_keeps_sharding_and_values(batch, n_devices):
    mesh = jax.make_mesh((n_devices,), ("data",))
    sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
    fn = simclr_cifar_raw
    out = fn(jax.random.key(0), sharded)
    ref = fn(jax.random.key(0), batch)
    for o, r in zip(out, ref, strict=True):
        assert o.sharding.is_equivalent_to(sharded.sharding, 4), o.sharding
        np.testing.assert_allclose(np.asarray(o), np.asarray(r), atol=1e-5)
    auto = jax.make_mesh((n_devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    out_auto = fn(jax.random.key(0), jax.device_put(batch, NamedSharding(auto, P("data"))))
    np.testing.assert_allclose(np.asarray(out_auto[0]), np.asarray(ref[0]), atol=1e-5)


def test_per_image_keys_follow_the_batch_sharding(batch, n_devices):
    mesh = jax.make_mesh((n_devices,), ("data",))  # explicit axes (the jax 0.10 default)
    sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
    # Inside a jitted step that also uses the images (jit takes its devices from them).
    keys, _ = jax.jit(lambda k, x: (A.per_image_keys(k, x), x + 1))(jax.random.key(4), sharded)
    assert keys.sharding.is_equivalent_to(NamedSharding(mesh, P("data")), 1)
    np.testing.assert_array_equal(
        jax.random.key_data(keys), jax.random.key_data(jax.random.split(jax.random.key(4), 8))
    )
    # What it is for: vmapping a per-image function over keys and a sharded batch.
    out = jax.jit(lambda k, x: jax.vmap(lambda kk, xx: xx + jax.random.uniform(kk))(
        A.per_image_keys(k, x), x))(jax.random.key(4), sharded.astype(np.float32))  # fmt: skip
    assert out.sharding.is_equivalent_to(sharded.sharding, 4)


def test_host_cropped_views(batch):
    crops = [batch, batch[:, :16, :16], batch[:, 16:, 16:]]
    views = jax.jit(lambda k, c: A.make_views("dino_cifar", k, c))(jax.random.key(0), crops)
    assert [v.shape for v in views] == [(8, 32, 32, 3), (8, 16, 16, 3), (8, 16, 16, 3)]
    assert all(np.isfinite(np.asarray(v)).all() for v in views)
    # MAE has no photometric ops: each host crop comes back as itself or its mirror image.
    (mae,) = A.photometric_views("mae_cifar", jax.random.key(0), [batch], normalize=False)
    mirrored = 0
    for i in range(8):
        m = np.asarray(mae[i])
        same = np.allclose(m, batch[i] / 255.0, atol=1e-6)
        mirrored += np.allclose(m, batch[i, :, ::-1] / 255.0, atol=1e-6) and not same
        assert same or mirrored
    assert 0 < mirrored < 8


def test_errors(batch):
    with pytest.raises(ValueError, match=r"unknown view recipe 'simclr_cifar10'; known: simclr"):
        A.make_views("simclr_cifar10", jax.random.key(0), batch)
    with pytest.raises(ValueError, match="has no local"):
        A.make_views("simclr_cifar", jax.random.key(0), batch, num_local_crops=2)
    with pytest.raises(ValueError, match=r"images must be \[B, H, W, 3\]"):
        A.make_views("simclr_cifar", jax.random.key(0), batch[0])
    with pytest.raises(ValueError, match="needs >= 2 crops"):
        A.photometric_views("byol_cifar", jax.random.key(0), [batch])
    with pytest.raises(ValueError, match="num_local_crops must be >= 0"):
        A.view_sizes("dino", num_local_crops=-1)
    bad = dataclasses.replace(A.RECIPES["dino"], local_size=0)
    with pytest.raises(ValueError, match="local_size > 0"):
        A.view_sizes(bad)
