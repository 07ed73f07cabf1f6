"""EMA momentum schedule and EMA update vs plain numpy formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax.train.ema import cosine_ema_momentum, ema_update


def np_momentum(k: int, total: int, base: float, final: float) -> float:
    """BYOL Appendix: tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, generalised."""
    k = min(max(k, 0), total)
    return final - (final - base) * (math.cos(math.pi * k / total) + 1) / 2


@pytest.mark.parametrize("total,base,final", [(10, 0.996, 1.0), (7, 0.9, 0.99), (1, 0.5, 1.0)])
def test_cosine_ema_momentum_matches_formula(total, base, final):
    steps = np.arange(-1, total + 3)
    want = np.array([np_momentum(int(k), total, base, final) for k in steps])
    eager = np.array(
        [float(cosine_ema_momentum(int(k), total, base=base, final=final)) for k in steps]
    )
    jitted = jax.jit(jax.vmap(lambda k: cosine_ema_momentum(k, total, base=base, final=final)))(
        jnp.asarray(steps)
    )
    np.testing.assert_allclose(eager, want, rtol=0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(jitted), want, rtol=0, atol=1e-7)
    assert eager[1] == pytest.approx(base) and eager[-1] == pytest.approx(final)
    assert np.all(np.diff(eager) >= -1e-7)  # non-decreasing: final >= base in all cases


def test_cosine_ema_momentum_default_is_byol():
    assert float(cosine_ema_momentum(0, 100)) == pytest.approx(0.996)
    assert float(cosine_ema_momentum(50, 100)) == pytest.approx(1 - 0.004 / 2)
    assert float(cosine_ema_momentum(100, 100)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(total_steps=0), "total_steps"),
        (dict(total_steps=2.5), "total_steps"),
        (dict(total_steps=10, base=1.5), "base"),
        (dict(total_steps=10, final=-0.1), "final"),
    ],
)
def test_cosine_ema_momentum_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cosine_ema_momentum(0, **kwargs)


def random_tree(seed: int, shapes=((3, 4), (5,), (2, 2, 3))):
    rng = np.random.default_rng(seed)
    return {f"layer{i}": {"w": rng.normal(size=s).astype(np.float32)} for i, s in enumerate(shapes)}


@pytest.mark.parametrize("m", [0.0, 0.3, 0.996, 1.0])
@pytest.mark.parametrize("shapes", [((3, 4), (5,)), ((1,), (2, 2, 3), (7, 1))])
def test_ema_update_matches_numpy(m, shapes):
    target, online = random_tree(0, shapes), random_tree(1, shapes)
    want = jax.tree.map(
        lambda t, o: m * t.astype(np.float64) + (1 - m) * o.astype(np.float64), target, online
    )
    for fn in (ema_update, jax.jit(ema_update)):
        got = fn(target, online, m)
        jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7), got, want)
    if m == 1.0:
        jax.tree.map(np.testing.assert_array_equal, ema_update(target, online, m), target)
    if m == 0.0:
        jax.tree.map(np.testing.assert_array_equal, ema_update(target, online, m), online)


def test_ema_update_gradients_and_traced_momentum():
    target, online = random_tree(2), random_tree(3)
    m = 0.9
    # d/d online = 1 - m, d/d target = m, d/d momentum = sum(t - o): independent closed forms.
    f = lambda t, o, mm: sum(jnp.sum(x) for x in jax.tree.leaves(ema_update(t, o, mm)))
    g_t, g_o, g_m = jax.grad(f, argnums=(0, 1, 2))(target, online, jnp.float32(m))
    jax.tree.map(lambda g: np.testing.assert_allclose(g, m, rtol=1e-6), g_t)
    jax.tree.map(lambda g: np.testing.assert_allclose(g, 1 - m, rtol=1e-6), g_o)
    want_m = sum(
        np.sum(t - o) for t, o in zip(jax.tree.leaves(target), jax.tree.leaves(online), strict=True)
    )
    np.testing.assert_allclose(g_m, want_m, rtol=1e-5)
    # Momentum from the schedule, inside jit, vmapped over a batch of momenta.
    step = jax.jit(lambda t, o, k: ema_update(t, o, cosine_ema_momentum(k, 10)))
    got = step(target, online, 5)
    tau = np_momentum(5, 10, 0.996, 1.0)
    jax.tree.map(
        lambda g, t, o: np.testing.assert_allclose(g, tau * t + (1 - tau) * o, rtol=1e-6),
        got,
        target,
        online,
    )
    batched = jax.vmap(lambda mm: ema_update(target, online, mm))(jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(batched["layer0"]["w"][0], online["layer0"]["w"])
    np.testing.assert_allclose(batched["layer0"]["w"][1], target["layer0"]["w"])


def test_ema_update_keeps_dtype():
    target = {"w": jnp.ones((4,), jnp.bfloat16)}
    online = {"w": jnp.zeros((4,), jnp.float32)}
    out = ema_update(target, online, 0.5)
    assert out["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out["w"], np.float32), 0.5)


def test_ema_update_on_sharded_trees(n_devices):
    mesh = jax.make_mesh((n_devices,), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    target, online = random_tree(4, ((16, 3),)), random_tree(5, ((16, 3),))
    t_s = jax.device_put(target, sharding)
    o_s = jax.device_put(online, sharding)
    got = jax.jit(ema_update)(t_s, o_s, 0.99)
    assert got["layer0"]["w"].sharding.is_equivalent_to(sharding, 2)
    np.testing.assert_allclose(
        got["layer0"]["w"], 0.99 * target["layer0"]["w"] + 0.01 * online["layer0"]["w"], rtol=1e-6
    )


def test_ema_update_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="trees differ"):
        ema_update({"a": np.ones(2)}, {"b": np.ones(2)}, 0.5)
    with pytest.raises(ValueError, match="shape"):
        ema_update({"a": np.ones(2)}, {"a": np.ones(3)}, 0.5)
    with pytest.raises(ValueError, match="momentum"):
        ema_update({"a": np.ones(2)}, {"a": np.ones(2)}, 1.5)
