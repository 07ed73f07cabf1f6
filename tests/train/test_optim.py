"""Optimisers, masks, schedules and freezing vs independent float64 numpy references."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax.train import optim

# -- helpers ---------------------------------------------------------------------------------


def flax_like_params(seed: int = 0) -> dict:
    """Leaf names and ranks as Flax produces them (conv, BN, dense, LN, prototypes)."""
    rng = np.random.default_rng(seed)
    shapes = {
        "encoder": {
            "Conv_0": {"kernel": (3, 3, 2, 4)},
            "BatchNorm_0": {"scale": (4,), "bias": (4,)},
            "Dense_0": {"kernel": (4, 3), "bias": (3,)},
        },
        "head": {
            "LayerNorm_0": {"scale": (3,), "bias": (3,)},
            "prototypes": {"kernel": (3, 5)},
        },
    }
    return jax.tree.map(
        lambda s: rng.normal(size=s).astype(np.float32),
        shapes,
        is_leaf=lambda x: isinstance(x, tuple),
    )


def flat(tree) -> dict[str, np.ndarray]:
    return {
        "/".join(optim.path_names(kp)): np.asarray(x, np.float64)
        for kp, x in jax.tree_util.tree_leaves_with_path(tree)
    }


def unflat_like(template, values: dict[str, np.ndarray]):
    return jax.tree_util.tree_map_with_path(
        lambda kp, x: jnp.asarray(values["/".join(optim.path_names(kp))], jnp.float32), template
    )


def grad_sequence(params, n: int, seed: int = 1, scale: float = 1.0) -> list[dict]:
    rng = np.random.default_rng(seed)
    seq = []
    for _ in range(n):
        seq.append({k: scale * rng.normal(size=v.shape) for k, v in flat(params).items()})
    return seq


def run_optax(tx, params, grads, *, jit: bool = False):
    state = tx.init(params)
    p = params

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    step = jax.jit(step) if jit else step
    for g in grads:
        p, state = step(p, state, unflat_like(params, g))
    return flat(p), state


def is_excluded(name: str, w: np.ndarray) -> bool:
    return w.ndim <= 1 or name.split("/")[-1] in ("bias", "scale")


def lr_fn(t: int) -> float:
    return 0.05 + 0.02 * t  # changing rate: tells "lr inside momentum" from "after"


# -- independent numpy references ------------------------------------------------------------


def np_lars(
    params, grads, *, lr, wd, momentum, eta, exclude=is_excluded, frozen=lambda n, t: False
):
    """SimCLR's TF LARS (lars_optimizer.py) in float64; ``frozen`` leaves are skipped."""
    w = flat(params)
    v = {k: np.zeros_like(x) for k, x in w.items()}
    for t, g in enumerate(grads):
        for k in w:
            if frozen(k, t):
                continue
            d = g[k].copy()
            if not exclude(k, w[k]):
                d = d + wd * w[k]
                wn, dn = np.linalg.norm(w[k]), np.linalg.norm(d)
                d = d * (eta * wn / dn if wn > 0 and dn > 0 else 1.0)
            v[k] = momentum * v[k] + lr(t) * d
            w[k] = w[k] - v[k]
    return w, v


def np_sgd(params, grads, *, lr, wd, momentum, exclude=is_excluded, clip=None, frozen=None):
    """PyTorch-style SGD: g + wd*w (masked), v = m v + g, w -= lr v; optional global clip."""
    w = flat(params)
    v = {k: np.zeros_like(x) for k, x in w.items()}
    for t, g in enumerate(grads):
        live = [k for k in w if not (frozen and frozen(k, t))]
        g = {k: g[k] for k in live}
        if clip is not None:
            norm = math.sqrt(sum(float(np.sum(x**2)) for x in g.values()))
            g = {k: x * min(1.0, clip / norm) for k, x in g.items()}
        for k in live:
            d = g[k] + (0.0 if exclude and exclude(k, w[k]) else wd * w[k])
            v[k] = momentum * v[k] + d
            w[k] = w[k] - lr(t) * v[k]
    return w


def np_adamw(params, grads, *, lr, wd, b1, b2, eps, exclude=is_excluded):
    """Loshchilov & Hutter Algorithm 2 with bias correction (decay scaled by lr, as optax)."""
    w = flat(params)
    m = {k: np.zeros_like(x) for k, x in w.items()}
    s = {k: np.zeros_like(x) for k, x in w.items()}
    for t, g in enumerate(grads, start=1):
        for k in w:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            s[k] = b2 * s[k] + (1 - b2) * g[k] ** 2
            mh, sh = m[k] / (1 - b1**t), s[k] / (1 - b2**t)
            decay = 0.0 if exclude and exclude(k, w[k]) else wd * w[k]
            w[k] = w[k] - lr(t - 1) * (mh / (np.sqrt(sh) + eps) + decay)
    return w


def assert_trees_close(got: dict, want: dict, rtol=2e-5, atol=2e-6):
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=atol, err_msg=k)


# -- masks -----------------------------------------------------------------------------------


def test_decay_mask_on_real_flax_params():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(4, (3, 3))(x)
            x = nn.BatchNorm(use_running_average=False)(x)
            x = nn.LayerNorm()(x.mean((1, 2)))
            return nn.Dense(5, use_bias=False, name="prototypes")(nn.Dense(3)(x))

    params = Net().init(jax.random.key(0), jnp.ones((2, 6, 6, 2)))["params"]
    mask = flat(optim.decay_mask(params))
    want = {
        "Conv_0/kernel": True,
        "Conv_0/bias": False,
        "BatchNorm_0/scale": False,
        "BatchNorm_0/bias": False,
        "LayerNorm_0/scale": False,
        "LayerNorm_0/bias": False,
        "Dense_0/kernel": True,
        "Dense_0/bias": False,
        "prototypes/kernel": True,
    }
    assert {k: bool(v) for k, v in mask.items()} == want
    assert all(flat(optim.decay_mask(params, exclude=None)).values())


def test_is_bias_or_norm_by_name_and_rank():
    assert optim.is_bias_or_norm(("a", "bias"), np.ones((2, 2)))
    assert optim.is_bias_or_norm(("a", "scale"), np.ones((2, 2)))
    assert optim.is_bias_or_norm(("a", "kernel"), np.ones((3,)))
    assert not optim.is_bias_or_norm(("scale_head", "kernel"), np.ones((3, 3)))


def test_param_labels_and_multi_transform():
    params = flax_like_params()
    labels = optim.param_labels(params, lambda path, p: "prototypes" in path)
    assert flat_labels(labels) == {
        k: ("frozen" if "prototypes" in k else "trainable") for k in flat(params)
    }
    tx = optax.multi_transform({"trainable": optax.sgd(0.1), "frozen": optax.set_to_zero()}, labels)
    new, _ = run_optax(tx, params, grad_sequence(params, 1))
    old = flat(params)
    assert np.array_equal(new["head/prototypes/kernel"], old["head/prototypes/kernel"])
    assert not np.array_equal(new["encoder/Dense_0/kernel"], old["encoder/Dense_0/kernel"])


def flat_labels(tree) -> dict[str, str]:
    return {
        "/".join(optim.path_names(kp)): x for kp, x in jax.tree_util.tree_leaves_with_path(tree)
    }


# -- schedule --------------------------------------------------------------------------------


def np_schedule(k, base, total, warmup, final, start):
    if k < warmup:
        return start + (base - start) * k / warmup
    k = min(k, total)
    decay = total - warmup
    frac = (k - warmup) / decay if decay else 1.0
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * frac))


@pytest.mark.parametrize(
    "base,total,warmup,final,start",
    [(0.3, 20, 5, 0.0, 0.0), (1.2, 17, 0, 0.01, 0.0), (0.5, 9, 9, 0.0, 0.1), (2.0, 1, 0, 0.0, 0.0)],
)
def test_warmup_cosine_schedule_matches_closed_form(base, total, warmup, final, start):
    sched = optim.warmup_cosine_schedule(base, total, warmup, final_lr=final, start_lr=start)
    steps = np.arange(total + 4)
    want = np.array([np_schedule(k, base, total, warmup, final, start) for k in steps])
    eager = np.array([float(sched(int(k))) for k in steps])
    jitted = np.asarray(jax.jit(jax.vmap(sched))(jnp.asarray(steps)))
    np.testing.assert_allclose(eager, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jitted, want, rtol=1e-6, atol=1e-7)
    assert float(sched(0)) == pytest.approx(start if warmup else base)
    assert float(sched(total + 3)) == pytest.approx(final, abs=1e-7)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(base_lr=0.1, total_steps=0, warmup_steps=0), "total_steps"),
        (dict(base_lr=0.1, total_steps=10, warmup_steps=11), "warmup_steps"),
        (dict(base_lr=0.1, total_steps=10, warmup_steps=-1), "warmup_steps"),
        (dict(base_lr=-0.1, total_steps=10, warmup_steps=1), "base_lr"),
        (dict(base_lr=0.1, total_steps=10, warmup_steps=1, final_lr=float("nan")), "final_lr"),
    ],
)
def test_schedule_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.warmup_cosine_schedule(**kwargs)


# -- LARS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
def test_lars_matches_numpy_simclr_lars(jit):
    params = flax_like_params()
    grads = grad_sequence(params, 5)
    grads[2]["encoder/Dense_0/kernel"][:] = 0.0  # zero gradient norm -> trust ratio 1
    params["head"]["prototypes"]["kernel"][:] = 0.0  # zero weight norm -> trust ratio 1
    kw = dict(wd=1e-2, momentum=0.9, eta=1e-3)
    tx = optim.lars(lr_fn, weight_decay=1e-2, momentum=0.9, trust_coefficient=1e-3)
    got, _ = run_optax(tx, params, grads, jit=jit)
    want, _ = np_lars(params, grads, lr=lr_fn, **kw)
    assert_trees_close(got, want)
    # Excluded leaves follow plain momentum SGD: a different result from adapting them.
    adapted, _ = np_lars(params, grads, lr=lr_fn, exclude=lambda n, w: False, **kw)
    assert not np.allclose(got["encoder/BatchNorm_0/scale"], adapted["encoder/BatchNorm_0/scale"])


def test_lars_without_exclusion_and_with_custom_predicate():
    params = flax_like_params(3)
    grads = grad_sequence(params, 4, seed=4)
    tx = optim.lars(lr_fn, weight_decay=1e-3, exclude_from_adaptation_and_wd=None)
    got, _ = run_optax(tx, params, grads)
    want, _ = np_lars(
        params, grads, lr=lr_fn, wd=1e-3, momentum=0.9, eta=1e-3, exclude=lambda n, w: False
    )
    assert_trees_close(got, want)
    only_head = lambda path, p: path[0] == "head"
    tx = optim.lars(lr_fn, weight_decay=1e-3, exclude_from_adaptation_and_wd=only_head)
    got, _ = run_optax(tx, params, grads)
    want, _ = np_lars(
        params,
        grads,
        lr=lr_fn,
        wd=1e-3,
        momentum=0.9,
        eta=1e-3,
        exclude=lambda n, w: n.startswith("head"),
    )
    assert_trees_close(got, want)


def test_lars_on_sharded_params_matches_single_device(n_devices):
    mesh = jax.make_mesh((n_devices,), ("data",))
    rng = np.random.default_rng(0)
    params = {
        "dense": {
            "kernel": rng.normal(size=(8, 6)).astype(np.float32),
            "bias": np.ones(8, np.float32),
        }
    }
    grads = grad_sequence(params, 3)
    tx = optim.make_optimizer("lars", learning_rate=lr_fn, weight_decay=1e-2)
    single, _ = run_optax(tx, params, grads, jit=True)
    sharded = jax.tree.map(
        lambda x: jax.device_put(x, NamedSharding(mesh, P("data"))),
        jax.tree.map(jnp.asarray, params),
    )
    got, _ = run_optax(tx, sharded, grads, jit=True)
    assert_trees_close(got, single, rtol=1e-6, atol=1e-7)
    want, _ = np_lars(params, grads, lr=lr_fn, wd=1e-2, momentum=0.9, eta=1e-3)
    assert_trees_close(got, want)


# -- make_optimizer --------------------------------------------------------------------------


@pytest.mark.parametrize("exclude", [True, False])
def test_sgd_matches_numpy(exclude):
    params = flax_like_params(5)
    grads = grad_sequence(params, 4, seed=6)
    tx = optim.make_optimizer(
        "sgd",
        learning_rate=lr_fn,
        weight_decay=0.05,
        momentum=0.8,
        exclude_norm_and_bias_from_wd=exclude,
    )
    got, _ = run_optax(tx, params, grads, jit=True)
    want = np_sgd(
        params, grads, lr=lr_fn, wd=0.05, momentum=0.8, exclude=is_excluded if exclude else None
    )
    assert_trees_close(got, want)


@pytest.mark.parametrize("exclude", [True, False])
def test_adamw_matches_numpy(exclude):
    params = flax_like_params(7)
    grads = grad_sequence(params, 4, seed=8)
    tx = optim.make_optimizer(
        "adamw",
        learning_rate=lr_fn,
        weight_decay=0.1,
        b1=0.8,
        b2=0.95,
        exclude_norm_and_bias_from_wd=exclude,
    )
    got, _ = run_optax(tx, params, grads)
    want = np_adamw(
        params,
        grads,
        lr=lr_fn,
        wd=0.1,
        b1=0.8,
        b2=0.95,
        eps=1e-8,
        exclude=is_excluded if exclude else None,
    )
    assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


def test_clip_grad_norm_rescales_global_norm_before_decay():
    params = flax_like_params(9)
    grads = grad_sequence(params, 3, seed=10, scale=10.0)  # global norm ~ 100 > clip
    tx = optim.make_optimizer(
        "sgd", learning_rate=0.1, weight_decay=0.05, momentum=0.9, clip_grad_norm=1.0
    )
    got, _ = run_optax(tx, params, grads)
    want = np_sgd(params, grads, lr=lambda t: 0.1, wd=0.05, momentum=0.9, clip=1.0)
    assert_trees_close(got, want)
    unclipped = np_sgd(params, grads, lr=lambda t: 0.1, wd=0.05, momentum=0.9)
    assert not np.allclose(got["encoder/Conv_0/kernel"], unclipped["encoder/Conv_0/kernel"])
    # A norm below the threshold is left alone.
    small = grad_sequence(params, 2, seed=11, scale=1e-3)
    got, _ = run_optax(tx, params, small)
    assert_trees_close(got, np_sgd(params, small, lr=lambda t: 0.1, wd=0.05, momentum=0.9))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="adam"), "unknown optimizer"),
        (dict(name="sgd", clip_grad_norm=0.0), "clip_grad_norm"),
        (dict(name="sgd", weight_decay=-1.0), "weight_decay"),
        (dict(name="adamw", b2=1.0), "b1 and b2"),
        (dict(name="lars", momentum=float("inf")), "momentum"),
    ],
)
def test_make_optimizer_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.make_optimizer(learning_rate=0.1, **kwargs)


# -- frozen parameters -----------------------------------------------------------------------

is_proto = lambda path, p: "prototypes" in path


def test_zero_grads_for():
    grads = jax.tree.map(jnp.asarray, flax_like_params())
    out = flat(optim.zero_grads_for(grads, is_proto))
    assert not out["head/prototypes/kernel"].any()
    assert np.array_equal(out["encoder/Conv_0/kernel"], flat(grads)["encoder/Conv_0/kernel"])
    f = jax.jit(lambda g, step: optim.zero_grads_for(g, is_proto, active=step < 2))
    assert not flat(f(grads, 1))["head/prototypes/kernel"].any()
    assert np.array_equal(
        flat(f(grads, 2))["head/prototypes/kernel"], flat(grads)["head/prototypes/kernel"]
    )


@pytest.mark.parametrize("jit", [False, True])
def test_freeze_lars_matches_numpy_with_skipped_leaves(jit):
    params = flax_like_params(12)
    grads = grad_sequence(params, 6, seed=13)
    n_frozen = 3
    tx = optim.freeze(optim.lars(lr_fn, weight_decay=1e-2), frozen=is_proto, num_steps=n_frozen)
    got, state = run_optax(tx, params, grads[:n_frozen], jit=jit)
    assert np.array_equal(got["head/prototypes/kernel"], flat(params)["head/prototypes/kernel"])
    assert int(state.count) == n_frozen
    got, _ = run_optax(tx, params, grads, jit=jit)
    skip = lambda name, t: "prototypes" in name and t < n_frozen
    want, _ = np_lars(params, grads, lr=lr_fn, wd=1e-2, momentum=0.9, eta=1e-3, frozen=skip)
    assert_trees_close(got, want)


def test_freeze_excludes_frozen_grads_from_clipping_and_holds_adam_moments():
    params = flax_like_params(14)
    grads = grad_sequence(params, 4, seed=15, scale=5.0)
    base = optim.make_optimizer(
        "sgd", learning_rate=lr_fn, weight_decay=0.01, momentum=0.9, clip_grad_norm=1.0
    )
    got, _ = run_optax(optim.freeze(base, frozen=is_proto, num_steps=2), params, grads)
    skip = lambda name, t: "prototypes" in name and t < 2
    want = np_sgd(params, grads, lr=lr_fn, wd=0.01, momentum=0.9, clip=1.0, frozen=skip)
    assert_trees_close(got, want)

    adam = optim.freeze(optim.make_optimizer("adamw", learning_rate=1e-2), frozen=is_proto)
    got, state = run_optax(adam, params, grads)
    assert np.array_equal(got["head/prototypes/kernel"], flat(params)["head/prototypes/kernel"])
    adam_state = state.inner[0]
    assert int(adam_state.count) == len(grads)
    assert not np.asarray(adam_state.mu["head"]["prototypes"]["kernel"]).any()
    assert np.asarray(adam_state.mu["encoder"]["Conv_0"]["kernel"]).any()


def test_freeze_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_steps"):
        optim.freeze(optax.sgd(0.1), frozen=is_proto, num_steps=-1)
    tx = optim.freeze(optax.sgd(0.1, momentum=0.9), frozen=is_proto)
    w = jnp.ones(3)
    with pytest.raises(ValueError, match="params tree"):
        tx.update(w, tx.init(w), w)
    with pytest.raises(ValueError, match="needs params"):
        tx.update({"a": w}, tx.init({"a": w}))
