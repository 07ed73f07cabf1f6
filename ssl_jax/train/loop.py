"""The training loop: config in, checkpoints, logs and a trained state out.

Reads the config (with ``ssl_jax.build``); everything below it takes plain arguments.
"""

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import flax.jax_utils
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from ssl_jax import build, data
from ssl_jax import config as cfg
from ssl_jax.train import checkpoint, metrics_log
from ssl_jax.train.preemption import PreemptionGuard
from ssl_jax.train.state import TrainState, create_train_state
from ssl_jax.train.step import data_mesh, jit_step, make_step_fn, pmap_step

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN/Inf; the message names the step and the metrics."""


def _host_metrics(metrics: dict[str, Any], steps: int, *, pmap: bool) -> list[dict[str, float]]:
    """One dict of floats per step of a call (pmap: device 0's copy, they are equal)."""
    host = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
    per_key = {k: (v[0] if pmap else v).reshape(steps) for k, v in host.items()}
    return [{k: float(v[i]) for k, v in per_key.items()} for i in range(steps)]


def _call_size(step: int, steps_per_call: int, end: int) -> int:
    """Steps the call that starts at ``step`` runs: ``steps_per_call`` when it starts at a
    multiple of it and ends by ``end``, else 1.

    A run resumed from one of its checkpoints (all written between calls) then makes the
    calls the uninterrupted run makes. That is what keeps the two bit for bit equal: a call
    of k steps computes what k calls of one step do only up to float rounding, since XLA
    may order a reduction differently in the larger program."""
    k = steps_per_call
    return k if step % k == 0 and step + k <= end else 1


def _check_finite(step: int, m: dict[str, float], skip: bool) -> None:
    if m.get("finite", 1.0) >= 1.0:
        return
    bad = sorted(k for k, v in m.items() if not math.isfinite(v)) or ["gradients"]
    msg = (
        f"non-finite value at step {step}: {', '.join(bad)}. The update of that step was not "
        "applied, so the state and checkpoints stay finite."
    )
    if skip:
        log.warning("%s Skipping it (train.skip_nonfinite=True).", msg)
        return
    raise NonFiniteLossError(msg + " Lower the learning rate or set train.skip_nonfinite=True.")


def _check_num_classes(source: data.DataSource, num_classes: int) -> None:
    # Under jit a label outside the classifier is not an error, just a silent wrong loss.
    if "label" in source.builder.info.features and source.num_classes > num_classes:
        raise ValueError(
            f"dataset {source.name!r} has {source.num_classes} classes but data.num_classes="
            f"{num_classes}: its labels would fall outside the classifiers; set "
            f"--config.data.num_classes={source.num_classes}"
        )


class Trainer:
    """Holds what one run needs; ``run()`` trains from the latest checkpoint to the end.

    Construction validates the config, resolves the data source, probes the checkpoint
    directory and builds the method, optimisers and schedules; nothing is compiled yet.

    Args:
      config: the run's ``ml_collections.ConfigDict`` (schema in ``ssl_jax.config``).
      workdir: where checkpoints, ``config.json``, ``metrics.jsonl`` and TensorBoard go.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | Path):
        self.config = config
        self.workdir = Path(workdir)
        cfg.validate(config, num_devices=jax.device_count(), num_processes=jax.process_count())
        # Before the data: an unwritable or full disk must fail before a long preparation.
        self.ckpt = checkpoint.Checkpointer(
            self.workdir / "checkpoints",
            max_to_keep=config.train.keep_checkpoints,
            async_save=config.train.async_checkpoint,
        )
        self.source = data.resolve_source(
            config.data.dataset,
            data_dir=config.data.data_dir or None,
            skip_corrupt=config.data.skip_corrupt,
        )
        _check_num_classes(self.source, config.data.num_classes)
        self.mesh = data_mesh()
        n_train = self.source.num_examples(config.data.train_split)
        if n_train < config.data.batch_size:
            raise ValueError(
                f"the training split has {n_train} examples, fewer than data.batch_size="
                f"{config.data.batch_size}; lower the batch size"
            )
        self.num_train_examples = n_train
        self.method = build.method(config, n_train)
        self.schedule = build.lr_schedule(config, n_train)
        self.tx = build.optimizer(config, n_train)
        self.probe_tx = optax.adam(config.optim.probe_lr)
        self.num_steps = cfg.total_steps(config, n_train)
        self.base_key = jax.random.key(config.seed)
        self.use_pmap = bool(config.train.use_pmap)
        self.steps_per_call = cfg.steps_per_call(config, jax.default_backend())
        self._step_fns = {}  # steps per call -> compiled step

    # -- state -----------------------------------------------------------------------------
    def _init_state(self, sample_images: np.ndarray) -> TrainState:
        replicated = NamedSharding(self.mesh, P())
        init = jax.jit(
            lambda key, x: create_train_state(
                self.method,
                self.tx,
                self.probe_tx,
                key,
                x,
                num_classes=self.config.data.num_classes,
            ),
            out_shardings=replicated,
        )
        return init(jax.random.fold_in(self.base_key, -1 % 2**31), jnp.asarray(sample_images))

    def restore_or_init(self, sample_images: np.ndarray) -> TrainState:
        """The latest intact checkpoint of ``workdir``, or a freshly initialised state.

        Args:
          sample_images: a uint8 batch ``[B, H, W, 3]`` to initialise the networks on (also
            gives the shapes the checkpoint is restored into).

        Returns:
          The training state, replicated over the mesh.
        """
        state = self._init_state(sample_images)
        restored = self.ckpt.restore_latest(state)
        if restored is None:
            return state
        step, state, _ = restored
        log.info("resumed from checkpoint at step %d", step)
        return state

    # -- loop ------------------------------------------------------------------------------
    def batches(self, start_step: int):
        """This process's rows of every global batch, from ``start_step`` on."""
        c = self.config
        pid, count = jax.process_index(), jax.process_count()
        local_batch = c.data.batch_size // count
        by_batch = c.data.process_sharding == "batch"
        it = data.train_batches(
            self.source,
            split=c.data.train_split,
            batch_size=c.data.batch_size if by_batch else local_batch,
            image_size=c.data.image_size,
            seed=c.seed,
            start_step=start_step,
            process_index=0 if by_batch else pid,
            process_count=1 if by_batch else count,
            skip_corrupt=c.data.skip_corrupt,
        )
        if not by_batch:
            return it
        rows = slice(pid * local_batch, (pid + 1) * local_batch)
        return ({k: v[rows] for k, v in b.items()} for b in it)

    def _step_fn(self, steps: int):
        """The step function for calls of ``steps`` steps (built once per size)."""
        if steps in self._step_fns:
            return self._step_fns[steps]
        if not self.use_pmap:
            step_fn = make_step_fn(self.method, self.tx, self.probe_tx, lr_schedule=self.schedule)
            fn = jit_step(step_fn, self.mesh, steps_per_call=steps)
        else:
            step_fn = make_step_fn(
                self.method,
                self.tx,
                self.probe_tx,
                lr_schedule=self.schedule,
                axis_name=build.PMAP_AXIS,
            )
            fn = pmap_step(step_fn, axis_name=build.PMAP_AXIS, steps_per_call=steps)
        self._step_fns[steps] = fn
        return fn

    def _to_device(self, batches: list[dict[str, np.ndarray]]):
        """One call's input: a step's batch, or several stacked on a leading axis."""
        if len(batches) == 1:
            batch, dim = batches[0], 0
        else:
            batch, dim = jax.tree.map(lambda *x: np.stack(x), *batches), 1
        if not self.use_pmap:
            return data.to_global(batch, self.mesh, batch_dim=dim)
        n = jax.local_device_count()
        # [..., B, rest] -> [n, ..., B / n, rest]: the device axis first.
        return jax.tree.map(
            lambda x: np.moveaxis(x.reshape((*x.shape[:dim], n, -1, *x.shape[dim + 1 :])), dim, 0),
            batch,
        )

    def run(self, *, stop_at: int | None = None) -> TrainState:
        """Trains to the end, or until a termination signal or step ``stop_at`` (which
        behaves like a preemption there: checkpoint, then return). Either takes effect at
        the end of a call, so with ``train.steps_per_call`` > 1 the run may stop a few steps
        after ``stop_at``."""
        c = self.config
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "config.json").write_text(c.to_json_best_effort(indent=1))
        if jax.process_index() == 0:
            print(f"data: {self.source.description}", flush=True)
        checkpoint.remove_partial_saves(self.ckpt.directory)  # left by a killed run
        state = self.restore_or_init(next(self.batches(0))["image"])
        start = int(jax.device_get(state.step))
        # Step s always trains on batch s of the stream: resumed == uninterrupted.
        batches = self.batches(start)
        if self.use_pmap:
            state = flax.jax_utils.replicate(state)
        writer = metrics_log.create_writer(self.workdir)
        pending = None
        t0 = time.time()
        bar = tqdm(
            total=self.num_steps,
            initial=start,
            desc=c.method,
            disable=jax.process_index() != 0,
        )
        with PreemptionGuard() as guard:
            step, calls = start, 0
            while step < self.num_steps:
                n = _call_size(step, self.steps_per_call, self.num_steps)
                batch = self._to_device([next(batches) for _ in range(n)])
                state, metrics = self._step_fn(n)(state, batch, self.base_key)
                # Read the previous call's metrics after dispatching this one: the host never
                # stalls the device, and a NaN is still reported with its own step number.
                if pending is not None:
                    self._report(writer, bar, *pending)
                pending = (step, n, metrics)
                step, calls = step + n, calls + 1
                # Agreed by all hosts when multi-host: asked after every call, with ids that
                # count up by one.
                stop = guard.should_stop_at(start + calls) or (
                    stop_at is not None and step >= stop_at
                )
                if step % c.train.checkpoint_every == 0 or stop:
                    # A NaN stop must come before this state can reach the disk.
                    self._report(writer, bar, *pending)
                    pending = None
                    self._save(step, state)
                if stop:
                    log.warning("termination signal: checkpoint saved at step %d, exiting", step)
                    break
            if pending is not None:
                self._report(writer, bar, *pending)
        bar.close()
        final = self._unreplicate(state)
        self._save(int(jax.device_get(final.step)), state, force=True)
        self.ckpt.wait()
        self.ckpt.close()
        writer.flush()
        log.info("trained %d steps in %.1fs", int(final.step) - start, time.time() - t0)
        return final

    def _unreplicate(self, state: TrainState) -> TrainState:
        if not self.use_pmap:
            return state
        # One computation in flight at a time. ``x[0]`` of a replicated array is a small
        # program over all the devices with an all-reduce in it; dispatched for every leaf
        # at once (and behind a step still running), XLA:CPU's collectives deadlocked: the
        # all-reduce rendezvous waited for ever for devices whose executions could not
        # start (8 fake devices on 2 busy cores, `tests/train/test_loop.py`).
        jax.block_until_ready(state)
        return jax.tree.map(lambda x: jax.block_until_ready(x[0]), state)

    def _save(self, step: int, state: TrainState, *, force: bool = False) -> None:
        state = self._unreplicate(state)
        self.ckpt.save(step, state, meta={"step": step}, force=force)

    def _report(self, writer, bar, first_step: int, steps: int, metrics) -> None:
        """Checks and logs the metrics of the ``steps`` steps of one call."""
        for i, m in enumerate(_host_metrics(metrics, steps, pmap=self.use_pmap)):
            step = first_step + i
            _check_finite(step, m, self.config.train.skip_nonfinite)
            bar.update(1)
            if step % self.config.train.log_every == 0 or step == self.num_steps - 1:
                writer.write_scalars(step, m)
                bar.set_postfix(loss=f"{m['loss']:.4f}", probe=f"{m['probe_top1']:.3f}")


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> TrainState:
    """Pretrains ``config.method`` into ``workdir`` (resuming from its latest checkpoint).

    Args:
      config: the run's config (``experiments/configs/*.py`` ``get_config()``).
      workdir: the run's directory.

    Returns:
      The final ``TrainState``.
    """
    return Trainer(config, workdir).run()


def save_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)
