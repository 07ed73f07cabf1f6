"""One pure train step ``(state, batch, key) -> (state, metrics)``, for any method.

The same function is compiled two ways: ``jax.jit`` over a ``Mesh`` with the batch sharded
on the data axis (primary; the compiler inserts the collectives, BatchNorm statistics are
global), or ``jax.pmap`` with an axis name (methods then gather explicitly).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import metrics as ssl_metrics
from ssl_jax.eval.linear_probe import online_probe_loss
from ssl_jax.methods.base import Method
from ssl_jax.train import xla_cpu
from ssl_jax.train.state import TrainState, check_rgb_batch

StepFn = Callable[[TrainState, dict[str, jax.Array], jax.Array], tuple[TrainState, dict]]


def _image_keys(aug_key: jax.Array, n_local: int, axis_name: str | None) -> jax.Array:
    """One key per image of the GLOBAL batch, so jit and pmap draw the same views."""
    if axis_name is None:
        return jax.random.split(aug_key, n_local)
    n_dev = lax.psum(1, axis_name)
    keys = jax.random.split(aug_key, n_local * n_dev)
    return lax.dynamic_slice_in_dim(keys, lax.axis_index(axis_name) * n_local, n_local)


def _collapse_monitors(z1: jax.Array, z2: jax.Array) -> dict[str, jax.Array]:
    z1 = lax.stop_gradient(z1).astype(jnp.float32)
    z2 = lax.stop_gradient(z2).astype(jnp.float32)
    return {
        "embedding_std": ssl_metrics.embedding_std(z1),
        "alignment": ssl_metrics.alignment(z1, z2),
        "uniformity": ssl_metrics.uniformity(z1),
    }


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_step_fn(
    method: Method,
    tx: optax.GradientTransformation,
    probe_tx: optax.GradientTransformation,
    *,
    lr_schedule: optax.Schedule,
    axis_name: str | None = None,
) -> StepFn:
    """Builds the step. ``axis_name`` is set only for the ``pmap`` path.

    A step whose loss or gradients are not finite leaves every array of the state unchanged
    except ``step`` and ``nonfinite_step`` (the first such step), so a NaN can never reach a
    checkpoint; the loop decides whether to stop (default) or go on (skip the update).

    Args:
      method: the method to train.
      tx: its optimiser (``optax``).
      probe_tx: the online linear probe's optimiser.
      lr_schedule: the learning-rate schedule of ``tx``, only for logging.
      axis_name: the mapped axis under ``pmap``; None for ``jit`` over a ``Mesh``.

    Returns:
      ``step_fn(state, batch, base_key) -> (state, metrics)``: ``batch`` holds uint8
      ``'image'`` ``[B, H, W, 3]`` and int ``'label'`` ``[B]`` (used by the probe and by
      methods with ``needs_labels``); ``metrics`` is a dict of scalars.
    """

    def step_fn(state: TrainState, batch: dict[str, jax.Array], base_key: jax.Array):
        # The key depends only on (seed, step): a resumed run draws the same numbers.
        key = jax.random.fold_in(base_key, state.step)
        aug_key, loss_key = jax.random.split(key)
        images = batch["image"]
        check_rgb_batch(images, "batch['image']")
        views = method.views(_image_keys(aug_key, images.shape[0], axis_name), images)

        extra = {"labels": batch["label"]} if method.needs_labels else {}

        def loss_fn(params):
            return method.loss(
                params,
                state.batch_stats,
                state.aux,
                views,
                loss_key,
                state.step,
                axis_name=axis_name,
                **extra,
            )

        (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        if axis_name is not None:
            # Losses return the global value; each device holds the gradient through its
            # own examples only, so the total is the sum over devices.
            grads = lax.psum(grads, axis_name)
        grads = method.grad_mask(grads, state.step)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        params, aux = method.after_update(params, out.aux, state.step + 1)

        # stop_gradient: the probe only measures the representation, it must not shape it.
        feats = lax.stop_gradient(out.features).astype(jnp.float32)
        (probe_loss, probe_acc), probe_grads = jax.value_and_grad(online_probe_loss, has_aux=True)(
            state.probe_params, feats, batch["label"]
        )
        if axis_name is not None:
            probe_grads, probe_loss, probe_acc = lax.pmean(
                (probe_grads, probe_loss, probe_acc), axis_name
            )
        probe_updates, probe_opt_state = probe_tx.update(
            probe_grads, state.probe_opt_state, state.probe_params
        )
        probe_params = optax.apply_updates(state.probe_params, probe_updates)

        finite = jnp.isfinite(loss) & _all_finite(grads)
        new = dict(
            params=params,
            batch_stats=out.batch_stats,
            aux=aux,
            opt_state=opt_state,
            probe_params=probe_params,
            probe_opt_state=probe_opt_state,
        )
        old = {k: getattr(state, k) for k in new}
        kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        first_bad = (~finite) & (state.nonfinite_step < 0)
        new_state = state.replace(
            step=state.step + 1,
            nonfinite_step=jnp.where(first_bad, state.step, state.nonfinite_step),
            **kept,
        )

        step_metrics = {
            "loss": loss,
            **out.metrics,
            **_collapse_monitors(*out.embeddings),
            **method.step_metrics(aux, state.step),
            "learning_rate": jnp.asarray(lr_schedule(state.step), jnp.float32),
            "grad_norm": optax.global_norm(grads),
            "probe_loss": probe_loss,
            "probe_top1": probe_acc,
            "finite": finite.astype(jnp.float32),
        }
        if axis_name is not None:
            step_metrics = lax.pmean(step_metrics, axis_name)
        return new_state, step_metrics

    return step_fn


def data_mesh(axis: str = "data") -> Mesh:
    """A 1-D mesh over every device, with compiler-propagated (``Auto``) sharding.

    Args:
      axis: the mesh axis name the batch is sharded on.

    Returns:
      A ``jax.sharding.Mesh`` of shape ``(jax.device_count(),)``.
    """
    return jax.make_mesh((jax.device_count(),), (axis,), axis_types=(jax.sharding.AxisType.Auto,))


def multi_step(step_fn: StepFn, num_steps: int) -> StepFn:
    """``num_steps`` consecutive steps as one function, for one compiled call.

    Step ``i`` trains on ``batches[i]`` and draws its key from ``state.step`` as usual, so
    the state after the call is the one ``num_steps`` separate calls would give, up to
    float rounding: in the larger program XLA may order a reduction differently (bit for
    bit equal for the benchmarked ResNet-18 and ConvNet steps on one CPU device, not for
    the tests' 8-device ones).

    The steps are unrolled rather than a ``lax.scan``: XLA:CPU (jaxlib 0.10) ran the scanned
    step about 50x slower than the same step outside a loop (ConvNet SimCLR, batch 64).

    Why: XLA:CPU takes a fresh scratch buffer for every call of a compiled function (all of
    a step's temporaries, about 1 GiB for a ResNet-18 at batch 64) and glibc ``mmap``s a
    block that large, so each call faults every page of it in again. Several steps per call
    reuse one buffer; on accelerators they save the per-call dispatch.

    Args:
      step_fn: from :func:`make_step_fn`.
      num_steps: steps per call, >= 1.

    Returns:
      ``(state, batches, key) -> (state, metrics)``: every leaf of ``batches`` has a leading
      axis of ``num_steps``, and so does every metric (step ``i``'s value at ``i``).
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1, got {num_steps!r}")

    def steps_fn(state: TrainState, batches: dict[str, jax.Array], base_key: jax.Array):
        for path, x in jax.tree_util.tree_leaves_with_path(batches):
            if x.ndim == 0 or x.shape[0] != num_steps:
                raise ValueError(
                    f"batch{jax.tree_util.keystr(path)} has shape {x.shape}: a call of "
                    f"{num_steps} steps takes their batches stacked on a leading axis of "
                    f"{num_steps}"
                )
        metrics = []
        for i in range(num_steps):
            state, m = step_fn(state, jax.tree.map(lambda x, i=i: x[i], batches), base_key)
            metrics.append(m)
        return state, jax.tree.map(lambda *v: jnp.stack(v), *metrics)

    return steps_fn


def jit_step(
    step_fn: StepFn,
    mesh: Mesh,
    *,
    data_axis: str = "data",
    tuned: bool = True,
    steps_per_call: int = 1,
) -> StepFn:
    """``jax.jit`` over ``mesh``: batch sharded on ``data_axis``, state replicated, donated.

    Args:
      step_fn: from :func:`make_step_fn` with ``axis_name=None``.
      mesh: e.g. :func:`data_mesh`.
      data_axis: the mesh axis that splits the batch.
      tuned: compile with the backend's step options
        (:func:`ssl_jax.train.xla_cpu.step_compiler_options`: on CPU, Eigen convolutions
        instead of YNNPACK ones); False gives XLA's defaults.
      steps_per_call: > 1 compiles :func:`multi_step`: the batch gets a leading axis of
        that many steps (each step's batch still sharded on ``data_axis``), and so do the
        metrics.

    Returns:
      The compiled ``(state, batch, key) -> (state, metrics)``; the input state is donated.
    """
    replicated = NamedSharding(mesh, P())
    if steps_per_call == 1:
        sharded = NamedSharding(mesh, P(data_axis))
    else:
        step_fn = multi_step(step_fn, steps_per_call)
        sharded = NamedSharding(mesh, P(None, data_axis))
    options = xla_cpu.step_compiler_options(list(mesh.devices.flat)) if tuned else None
    return jax.jit(
        step_fn,
        in_shardings=(replicated, sharded, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
        compiler_options=options,
    )


def pmap_step(step_fn: StepFn, *, axis_name: str, steps_per_call: int = 1) -> Callable:
    """``jax.pmap`` path: state replicated along a leading device axis, batch split on it.

    Args:
      step_fn: from :func:`make_step_fn` with the same ``axis_name``.
      axis_name: the mapped axis the step's collectives reduce over.
      steps_per_call: > 1 maps :func:`multi_step`: after the device axis, the batch and
        the metrics get an axis of that many steps.

    Returns:
      The pmapped ``(state, batch, key) -> (state, metrics)``: state and batch carry a
      leading device axis, the key is shared; the input state is donated.
    """
    if steps_per_call != 1:
        step_fn = multi_step(step_fn, steps_per_call)
    return jax.pmap(step_fn, axis_name=axis_name, in_axes=(0, 0, None), donate_argnums=(0,))
