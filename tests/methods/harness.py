"""Builds a method from its ``:tiny`` config and runs the shared jitted step on 8 devices."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import build
from ssl_jax.train.state import create_train_state
from ssl_jax.train.step import data_mesh, jit_step, make_step_fn
from tests.conftest import load_config

BATCH = 16
# Test-only: cheap CPU code generation. Compiling is most of a tiny run's cost and these
# options cut it several-fold; the computation is the same, only less optimised.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
# 2 steps per epoch at batch 16: epoch-based schedules (frozen prototypes, teacher
# temperature warm-up) switch within a 3-step test.
NUM_TRAIN_EXAMPLES = 32


def tiny_config(method: str, dataset: str = "cifar10", **overrides):
    c = load_config(f"{method}_{dataset}.py", "tiny")
    for path, value in overrides.items():
        node = c
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def images(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(BATCH, 32, 32, 3), dtype=np.uint8)
    return x, rng.integers(0, 10, size=(BATCH,), dtype=np.int32)


@dataclasses.dataclass
class Run:
    """A method, its jitted step over the 8-device data mesh, and what each step did."""

    config: object
    method: object
    step_fn: object
    base_key: jax.Array
    states: list  # host copies (numpy) of the state before step 0, after step 0, ...
    metrics: list  # host metrics of each step
    batches: list  # the uint8 images of each step


def run(config, num_steps: int = 3) -> Run:
    n = NUM_TRAIN_EXAMPLES
    method = build.method(config, n)
    tx = build.optimizer(config, n)
    probe_tx = optax.adam(1e-3)
    mesh = data_mesh()  # jax.make_mesh((8,), ("data",)) with Auto axes
    x0, _ = images(0)
    # Jitted with replicated outputs, as the training loop does it.
    init = jax.jit(
        lambda key, x: create_train_state(method, tx, probe_tx, key, x, num_classes=10),
        out_shardings=NamedSharding(mesh, P()),
    )
    x0 = jnp.asarray(x0)
    key = jax.random.key(1)
    state = init.lower(key, x0).compile(compiler_options=FAST_COMPILE)(key, x0)
    step_fn = jit_step(
        make_step_fn(method, tx, probe_tx, lr_schedule=build.lr_schedule(config, n)), mesh
    )
    base_key = jax.random.key(2)
    sharded = NamedSharding(mesh, P("data"))
    out = Run(config, method, None, base_key, [jax.device_get(state)], [], [])
    for i in range(num_steps):
        x, y = images(10 + i)
        batch = jax.device_put({"image": x, "label": y}, sharded)
        if out.step_fn is None:
            out.step_fn = step_fn.lower(state, batch, base_key).compile(
                compiler_options=FAST_COMPILE
            )
        state, metrics = out.step_fn(state, batch, base_key)
        out.states.append(jax.device_get(state))
        out.metrics.append({k: float(v) for k, v in jax.device_get(metrics).items()})
        out.batches.append(x)
    return out


def fast_jit(fn):
    """``jax.jit`` compiled with ``FAST_COMPILE``, one executable per input signature.

    Eager op-by-op execution of the augmentations costs more here than compiling them."""
    jitted, cache = jax.jit(fn), {}

    def call(*args):
        sig = tuple((np.shape(x), str(x.dtype)) for x in jax.tree.leaves(args))
        sig = (jax.tree.structure(args), sig)
        if sig not in cache:
            cache[sig] = jitted.lower(*args).compile(compiler_options=FAST_COMPILE)
        return cache[sig](*args)

    return call


def step_views(r: Run, i: int) -> list[jax.Array]:
    """The views step ``i`` trained on, drawn the way ``ssl_jax.train.step`` draws them."""
    if not hasattr(r, "_views"):
        r._views = fast_jit(lambda keys, x: r.method.views(keys, x))
    key = jax.random.fold_in(r.base_key, r.states[i].step)
    aug_key, _ = jax.random.split(key)
    x = jnp.asarray(r.batches[i])
    return r._views(jax.random.split(aug_key, x.shape[0]), x)


def loss_key(r: Run, i: int) -> jax.Array:
    key = jax.random.fold_in(r.base_key, r.states[i].step)
    return jax.random.split(key)[1]


def assert_trains(r: Run) -> None:
    """Every step is finite, the loss and monitors are logged, and the params move."""
    for m in r.metrics:
        assert m["finite"] == 1.0
        for k in ("loss", "embedding_std", "alignment", "uniformity", "grad_norm"):
            assert np.isfinite(m[k]), (k, m)
    assert [int(s.step) for s in r.states] == list(range(len(r.states)))
    for a, b in zip(r.states[:-1], r.states[1:], strict=True):
        moved = [
            not np.array_equal(x, y)
            for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True)
        ]
        assert any(moved)


def assert_ema(r: Run, subset) -> None:
    """target_{k+1} == m_k target_k + (1 - m_k) online_{k+1}, with m_k the logged momentum."""
    for i in range(len(r.metrics)):
        m = r.method.momentum(int(r.states[i].step))
        np.testing.assert_allclose(r.metrics[i]["ema_momentum"], float(m), rtol=0, atol=1e-7)
        old = r.states[i].aux["target_params"]
        new = r.states[i + 1].aux["target_params"]
        online = subset(r.states[i + 1].params)
        m = np.float32(m)
        for t0, t1, o in zip(
            jax.tree.leaves(old), jax.tree.leaves(new), jax.tree.leaves(online), strict=True
        ):
            np.testing.assert_allclose(t1, m * t0 + (1 - m) * o, rtol=1e-6, atol=1e-7)


def run_pmap(config, num_steps: int = 2) -> list[dict]:
    """The same steps through the ``pmap`` path (``config.train.use_pmap`` must be True, so
    BatchNorm averages over the mapped axis); returns each step's metrics."""
    import flax.jax_utils

    from ssl_jax.train.step import pmap_step

    n = NUM_TRAIN_EXAMPLES
    method = build.method(config, n)
    tx = build.optimizer(config, n)
    probe_tx = optax.adam(1e-3)
    x0, _ = images(0)
    init = jax.jit(lambda key, x: create_train_state(method, tx, probe_tx, key, x, num_classes=10))
    x0, key = jnp.asarray(x0), jax.random.key(1)
    state = init.lower(key, x0).compile(compiler_options=FAST_COMPILE)(key, x0)
    state = flax.jax_utils.replicate(state)
    step_fn = pmap_step(
        make_step_fn(
            method,
            tx,
            probe_tx,
            lr_schedule=build.lr_schedule(config, n),
            axis_name=build.PMAP_AXIS,
        ),
        axis_name=build.PMAP_AXIS,
    )
    out, compiled = [], None
    for i in range(num_steps):
        x, y = images(10 + i)
        batch = {"image": x.reshape(8, -1, *x.shape[1:]), "label": y.reshape(8, -1)}
        if compiled is None:
            lowered = step_fn.lower(state, batch, jax.random.key(2))
            compiled = lowered.compile(compiler_options=FAST_COMPILE)
        state, metrics = compiled(state, batch, jax.random.key(2))
        out.append({k: float(v[0]) for k, v in jax.device_get(metrics).items()})
    return out, jax.device_get(flax.jax_utils.unreplicate(state))


_FORWARDS: dict = {}


def forward_train(net, params, batch_stats, *args, method=None, **kwargs):
    """``apply_train(net, ...)[0]``, jitted with ``FAST_COMPILE`` once per (net, method,
    Python-valued keyword arguments); array arguments are traced."""
    from ssl_jax.methods.common import apply_train

    static = {k: v for k, v in kwargs.items() if isinstance(v, bool | int | float | str)}
    dynamic = {k: v for k, v in kwargs.items() if k not in static}
    key = (id(net), method, tuple(sorted(static.items())))
    if key not in _FORWARDS:

        def fn(p, s, a, kw):
            return apply_train(net, p, s, *a, method=method, **kw, **static)[0]

        _FORWARDS[key] = (net, fast_jit(fn))  # keep net alive so its id is not reused
    return _FORWARDS[key][1](params, batch_stats, args, dynamic)
