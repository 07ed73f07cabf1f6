"""Shared helpers for the model tests: parameter counting, random (non-init) weights, a
small ConvNet training step to compare code paths on, the primitives of a traced function,
a small ResNet's gradients with and without a benchmark baseline, and the YNNPACK fusions
of a compiled module."""

import re

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.profile_step import computations


def count_params(module, input_shape, **call_kw) -> int:
    """Parameter count from ``jax.eval_shape`` of init: no real compute, any model size."""
    variables = jax.eval_shape(
        lambda: module.init(jax.random.key(0), jnp.zeros(input_shape), train=False, **call_kw)
    )
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))


def randomize(variables, seed: int):
    """Replaces every parameter and BN statistic by random values of a sensible scale.

    Init values hide bugs (zero biases, gamma = 0 or 1, mean 0, var 1), so numerical checks
    run on weights where every term of the forward pass matters.
    """
    rng = np.random.default_rng(seed)

    def leaf(path, x):
        name = jax.tree_util.keystr(path[-1:])
        shape = x.shape
        if "var" in name:
            v = rng.uniform(0.5, 1.5, shape)
        elif "scale" in name:
            v = rng.uniform(0.5, 1.5, shape)
        elif "mean" in name or "bias" in name:
            v = rng.normal(0.0, 0.2, shape)
        elif "kernel" in name and len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1]))
            v = rng.normal(0.0, np.sqrt(1.5 / fan_in), shape)
        else:
            v = rng.normal(0.0, 0.5, shape)
        return jnp.asarray(v, x.dtype)

    return jax.tree_util.tree_map_with_path(leaf, variables)


def jit_init(module, *args, seed: int = 0, **kw):
    """``module.init`` under ``jit``: one compile instead of one per eager op (much faster)."""
    return jax.jit(lambda *a: module.init(jax.random.key(seed), *a, **kw))(*args)


def jit_apply(module, variables, *args, **kw):
    """``module.apply(variables, *args, **kw)`` under ``jit`` (keyword arguments static)."""
    return jax.jit(lambda v, *a: module.apply(v, *a, **kw))(variables, *args)


def convnet_train_step():
    """A small ConvNet's training step, traced and compiled now, so that patches in force
    apply to it.

    Returns:
      ``(step, params, text)``: ``step(params) -> ((loss, batch_stats), grads)``, the
      initial parameters, and the step's StableHLO text.
    """
    from ssl_jax.models import ConvNet

    model = ConvNet(widths=(4, 8, 16))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 16, 16, 3)) + 0.5, jnp.float32)
    variables = model.init(jax.random.key(0), x, train=False)

    def loss(params):
        out, new = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(jnp.tanh(out) * jnp.arange(out.shape[-1])), new

    # A new function per call: jit's trace cache would keep the first trace.
    step = jax.jit(jax.value_and_grad(loss, has_aux=True))
    lowered = step.lower(variables["params"])
    return lowered.compile(), variables["params"], lowered.as_text()


def ynn_fusion_bodies(hlo: str) -> list[str]:
    """The text of each computation that a compiled module calls as a YNNPACK fusion."""
    bodies = computations(hlo)
    return [
        bodies[c]
        for c in re.findall(r"^\s*(?:ROOT )?%ynn_fusion[\w.]* = .*calls=%([\w.\-]+)", hlo, re.M)
    ]


def primitives(fn, *args) -> set[str]:
    """The primitives of ``fn``'s jaxpr, those of the jaxprs it calls included."""

    def walk(jaxpr):
        for e in jaxpr.eqns:
            yield e.primitive.name
            for p in e.params.values():
                inner = getattr(p, "jaxpr", p)
                if hasattr(inner, "eqns"):
                    yield from walk(inner)

    return set(walk(jax.make_jaxpr(fn)(*args).jaxpr))


def assert_resnet_grads_unchanged_by(baseline, input_hw) -> None:
    """A small CIFAR ResNet's parameter and input gradients (random weights, train mode)
    are the same with the current code and within ``baseline()``, a benchmark "before"."""
    from ssl_jax.models import ResNet

    model = ResNet(stage_sizes=(1, 1, 1), stem="cifar", zero_init_residual=False)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, *input_hw, 3)), jnp.float32)
    variables = randomize(model.init(jax.random.key(0), x, train=False), 3)

    def grads():
        def loss(params, x):
            out, _ = model.apply(
                {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
            )
            return jnp.sum(jnp.tanh(out) * jnp.arange(out.shape[-1]))

        return jax.jit(jax.grad(loss, (0, 1)))(variables["params"], x)

    now = grads()
    with baseline():
        before = grads()
    # float32 sums in another order: compare on the scale of each array.
    for a, b in zip(jax.tree.leaves(now), jax.tree.leaves(before), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())
