"""Training for a wall-time budget: measure the step time, fit the step count, cap the run.

The learning-rate and EMA schedules need the run length before the first step, so the
number of steps is fixed up front: :func:`calibrate` compiles the method's train step
and times a few steps on real batches; :func:`steps_for_budget` turns that into the steps
that fit. :func:`train_capped` then runs ``ssl_jax.train.loop.Trainer`` (checkpoints,
resume, logs) and, should the shared machine slow down, stops it at a hard cap through the
trainer's own preemption path (SIGTERM: checkpoint, then return).
"""

import dataclasses
import logging
import os
import signal
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import build, data
from ssl_jax import config as cfg
from ssl_jax.train.loop import Trainer
from ssl_jax.train.state import TrainState, create_train_state
from ssl_jax.train.step import data_mesh, jit_step, make_step_fn

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Timings of one method's train step on this machine, in seconds.

    Attributes:
      setup_s: data source, method, first batch and state initialisation.
      compile_s: the first step (compilation plus one step).
      step_s: mean time of the timed steps that followed (data loading included).
      timed_steps: how many steps ``step_s`` averages.
    """

    setup_s: float
    compile_s: float
    step_s: float
    timed_steps: int


def calibrate(
    config: ml_collections.ConfigDict, *, max_steps: int = 20, max_seconds: float = 20.0
) -> Calibration:
    """Compiles ``config``'s train step and times up to ``max_steps`` steps after it.

    Args:
      config: a run config with ``train.num_steps`` set (schedules need a length; the step
        time does not depend on it).
      max_steps: most steps to time (at least 2 are always timed).
      max_seconds: stop timing after this long.

    Returns:
      The :class:`Calibration`.
    """
    if max_steps < 2:
        raise ValueError(f"max_steps must be >= 2, got {max_steps}")
    t0 = time.perf_counter()
    cfg.validate(config, num_devices=jax.device_count(), num_processes=jax.process_count())
    source = data.resolve_source(
        config.data.dataset,
        data_dir=config.data.data_dir or None,
        skip_corrupt=config.data.skip_corrupt,
    )
    n = source.num_examples(config.data.train_split)
    method = build.method(config, n)
    tx = build.optimizer(config, n)
    probe_tx = optax.adam(config.optim.probe_lr)
    mesh = data_mesh()
    batches = data.train_batches(
        source,
        split=config.data.train_split,
        batch_size=config.data.batch_size,
        image_size=config.data.image_size,
        seed=config.seed,
        skip_corrupt=config.data.skip_corrupt,
    )
    first = next(batches)
    init = jax.jit(
        lambda key, x: create_train_state(
            method, tx, probe_tx, key, x, num_classes=config.data.num_classes
        ),
        out_shardings=NamedSharding(mesh, P()),
    )
    state = jax.block_until_ready(init(jax.random.key(config.seed), jnp.asarray(first["image"])))
    step = jit_step(
        make_step_fn(method, tx, probe_tx, lr_schedule=build.lr_schedule(config, n)), mesh
    )
    key = jax.random.key(config.seed)
    t1 = time.perf_counter()
    state, metrics = step(state, data.to_global(first, mesh), key)
    jax.block_until_ready(metrics)
    t2 = time.perf_counter()
    timed = 0
    while timed < max_steps and (timed < 2 or time.perf_counter() - t2 < max_seconds):
        state, metrics = step(state, data.to_global(next(batches), mesh), key)
        jax.block_until_ready(metrics)
        timed += 1
    t3 = time.perf_counter()
    return Calibration(
        setup_s=t1 - t0, compile_s=t2 - t1, step_s=(t3 - t2) / timed, timed_steps=timed
    )


def steps_for_budget(
    cal: Calibration, budget_s: float, *, min_steps: int = 1, margin: float = 1.0
) -> int:
    """Steps that fit in ``budget_s`` seconds of a training run (set-up and compilation of
    the run itself included, as measured by the calibration).

    Args:
      cal: the step timings.
      budget_s: wall-time budget of the training run.
      min_steps: never fewer.
      margin: plan for ``margin * budget_s`` (the trainer's checkpoints and logs, and a
        shared machine's slower moments, cost time the calibration does not see).

    Returns:
      ``max(min_steps, floor((margin * budget_s - setup - compile) / step_s))``.
    """
    if budget_s <= 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s}")
    if not 0 < margin <= 1:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    left = margin * budget_s - cal.setup_s - cal.compile_s
    return max(int(min_steps), int(left // cal.step_s))


def train_capped(
    config: ml_collections.ConfigDict, workdir: str | Path, *, cap_s: float | None
) -> tuple[TrainState, dict]:
    """``Trainer(config, workdir).run()``, stopped at a checkpoint after ``cap_s`` seconds.

    Resumes from the latest checkpoint of ``workdir``. The cap sends this process SIGTERM
    (every second until the run returns), which the trainer's preemption guard turns into
    "save a checkpoint and return"; a SIGTERM from anyone else still ends the process.
    Must be called from the main thread (signal handlers).

    Args:
      config: the run config.
      workdir: the run's work dir.
      cap_s: wall-time cap in seconds, or None for none.

    Returns:
      ``(final state, {'train_s', 'capped', 'start_step', 'end_step'})``; ``capped``: the
      cap stopped the run before its last step.
    """
    trainer = Trainer(config, workdir)
    start_step = trainer.ckpt.latest_step() or 0
    fired, finished = threading.Event(), threading.Event()

    def fire() -> None:
        fired.set()
        log.warning("wall-time cap of %.0fs reached: stopping at the next step", cap_s)
        # Repeated until the run returns: a signal that lands before the trainer has
        # installed its guard (start-up, compilation) is otherwise lost.
        while not finished.is_set():
            os.kill(os.getpid(), signal.SIGTERM)
            finished.wait(1.0)

    def outside_guard(signum, frame) -> None:
        # Cap signals outside the trainer's guard (before it, after it, or the repeats the
        # guard passes on) are ignored; anyone else's SIGTERM still ends the process.
        if not fired.is_set():
            raise SystemExit(128 + signum)

    timer = threading.Timer(cap_s, fire) if cap_s else None
    previous = signal.signal(signal.SIGTERM, outside_guard)
    t0 = time.perf_counter()
    try:
        if timer is not None:
            timer.daemon = True
            timer.start()
        state = trainer.run()
    finally:
        finished.set()
        if timer is not None:
            timer.cancel()
            if timer.is_alive():
                timer.join()
        signal.signal(signal.SIGTERM, previous)
    end_step = int(jax.device_get(state.step))
    info = {
        "train_s": time.perf_counter() - t0,
        # Stopped short of the planned steps (a cap that fires during the final save is not).
        "capped": fired.is_set() and end_step < trainer.num_steps,
        "start_step": int(start_step),
        "end_step": end_step,
    }
    return state, info


def initial_state(config: ml_collections.ConfigDict, workdir: str | Path) -> TrainState:
    """The state a training run of ``config`` starts from (its random initialisation),
    drawn exactly as ``Trainer`` draws it; ``workdir`` must hold no checkpoint."""
    trainer = Trainer(config, workdir)
    try:
        if trainer.ckpt.latest_step() is not None:
            raise ValueError(f"{workdir} holds checkpoints: not a random initialisation")
        return trainer.restore_or_init(next(trainer.batches(0))["image"])
    finally:
        trainer.ckpt.close()
