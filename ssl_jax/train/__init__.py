"""Training: state, the one jitted step, optimisers and schedules, EMA, checkpoints, the loop.

    state = create_train_state(method, tx, probe_tx, rng, images_uint8, num_classes=10)
    step = jit_step(make_step_fn(method, tx, probe_tx, lr_schedule=schedule), data_mesh())
    state, metrics = step(state, batch, base_key)   # batch = {"image": ..., "label": ...}

or, from a config, ``train(config, workdir)`` (what ``python -m ssl_jax.main`` runs).

Importing this package is cheap: each name loads its submodule on first use. Methods import
``ssl_jax.train.ema`` and ``ssl_jax.train.optim``, and the loop pulls in ``tf.data``, Orbax
and CLU; eager imports here would make every method import all of that (and import in a
cycle through ``ssl_jax.methods``).
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ssl_jax.train.checkpoint import (
        CheckpointDirError,
        Checkpointer,
        CorruptCheckpointError,
        NonFiniteStateError,
    )
    from ssl_jax.train.ema import cosine_ema_momentum, ema_update
    from ssl_jax.train.loop import NonFiniteLossError, Trainer, train
    from ssl_jax.train.metrics_log import create_writer, read_jsonl
    from ssl_jax.train.optim import (
        decay_mask,
        freeze,
        is_bias_or_norm,
        lars,
        make_optimizer,
        param_labels,
        warmup_cosine_schedule,
        zero_grads_for,
    )
    from ssl_jax.train.preemption import PreemptionGuard
    from ssl_jax.train.state import TrainState, create_train_state
    from ssl_jax.train.step import data_mesh, jit_step, make_step_fn, pmap_step

# Public name -> the submodule that defines it.
_SOURCES = {
    "CheckpointDirError": "checkpoint",
    "Checkpointer": "checkpoint",
    "CorruptCheckpointError": "checkpoint",
    "NonFiniteLossError": "loop",
    "NonFiniteStateError": "checkpoint",
    "PreemptionGuard": "preemption",
    "TrainState": "state",
    "Trainer": "loop",
    "cosine_ema_momentum": "ema",
    "create_train_state": "state",
    "create_writer": "metrics_log",
    "data_mesh": "step",
    "decay_mask": "optim",
    "ema_update": "ema",
    "freeze": "optim",
    "is_bias_or_norm": "optim",
    "jit_step": "step",
    "lars": "optim",
    "make_optimizer": "optim",
    "make_step_fn": "step",
    "param_labels": "optim",
    "pmap_step": "step",
    "read_jsonl": "metrics_log",
    "train": "loop",
    "warmup_cosine_schedule": "optim",
    "zero_grads_for": "optim",
}

__all__ = [
    "CheckpointDirError",
    "Checkpointer",
    "CorruptCheckpointError",
    "NonFiniteLossError",
    "NonFiniteStateError",
    "PreemptionGuard",
    "TrainState",
    "Trainer",
    "cosine_ema_momentum",
    "create_train_state",
    "create_writer",
    "data_mesh",
    "decay_mask",
    "ema_update",
    "freeze",
    "is_bias_or_norm",
    "jit_step",
    "lars",
    "make_optimizer",
    "make_step_fn",
    "param_labels",
    "pmap_step",
    "read_jsonl",
    "train",
    "warmup_cosine_schedule",
    "zero_grads_for",
]


def __getattr__(name: str):
    """Loads the submodule that defines ``name`` on first access (PEP 562)."""
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
