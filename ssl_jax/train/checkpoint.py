"""Checkpoints of the training state: a thin, defensive layer over Orbax.

Each checkpoint is an Orbax step directory holding two items: ``state`` (the pytree of
arrays, ``StandardSave``, sharded arrays written and read per shard) and ``meta`` (JSON: the
caller's metadata plus, per leaf, shape, dtype and two checksums of the raw bits).

What this layer adds to ``ocp.CheckpointManager``:

* the work directory is probed at construction (create, write + fsync a file, free space),
  so an unwritable directory or a full disk fails before any training happens;
* a state holding NaN/Inf is refused, so a good checkpoint is never rotated out for a bad
  one; a save is refused when the disk cannot hold it;
* restoring verifies the checksums: Orbax/TensorStore return garbled bytes without error
  when a data file is damaged. A checkpoint that cannot be read or does not verify is
  logged, renamed to ``<step>.corrupt`` (Orbax then ignores it, and later steps can be saved
  again) and the previous one is tried. Orbax writes into a temporary directory and renames
  it when complete, so a save cut short never shows up as a step.

A write that fails part-way (disk full, quota, I/O error) raises
:class:`CheckpointWriteError` naming the step and the OS error; the earlier checkpoints are
untouched. What a killed or failed save leaves behind (Orbax's ``<step>.orbax-checkpoint-tmp``
directory) is never restored, and :func:`remove_partial_saves` (called by the training loop,
which owns its directory) deletes it.

Test hook: with ``SSL_JAX_CHECKPOINT_PAUSE=<step>:<file>`` in the environment, the save of
``<step>`` creates ``<file>`` and then blocks just before Orbax commits the step (all data
written, the directory not yet renamed), so a fault test can kill the process inside the
write. It is read once per :class:`Checkpointer`; unset, Orbax's defaults are used unchanged.

Only local (or mounted) file systems are supported: the probes use ``os.fsync`` and
``shutil.disk_usage``.

References:
  Orbax ``CheckpointManager`` docs (orbax-checkpoint 0.12).
"""

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from ssl_jax.train import _integrity as integrity
from ssl_jax.train._checkpoint_dir import (
    DEFAULT_MIN_FREE_BYTES,
    PAUSE_ENV,
    CheckpointDirError,
    check_directory,
    pausing_commit,
    remove_partial_saves,
)

__all__ = [
    "DEFAULT_MIN_FREE_BYTES",
    "FORMAT_VERSION",
    "PAUSE_ENV",
    "CheckpointDirError",
    "CheckpointWriteError",
    "Checkpointer",
    "CorruptCheckpointError",
    "NonFiniteStateError",
    "check_directory",
    "remove_partial_saves",
]

log = logging.getLogger(__name__)

PyTree = Any
FORMAT_VERSION = 1
_STATE, _META = "state", "meta"


class NonFiniteStateError(ValueError):
    """The state to save holds NaN or Inf."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint could not be read back, or its contents fail verification."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed part-way (disk full, quota, I/O error)."""


def _brief(e: BaseException, limit: int = 300) -> str:
    # TensorStore errors embed whole JSON specs; the head names the file and the problem.
    text = f"{type(e).__name__}: {e}"
    return text if len(text) <= limit else text[:limit] + " ..."


def _os_error_code(e: BaseException) -> int | None:
    """The errno of an OSError, or the one TensorStore puts in its messages."""
    if isinstance(e, OSError) and e.errno:
        return e.errno
    found = re.search(r"os_error_code='?(\d+)", str(e))
    return int(found.group(1)) if found else None


def _all_processes_agree(ok: bool) -> bool:
    if jax.process_count() == 1:
        return ok
    return bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))


# -- the checkpointer ------------------------------------------------------------------------
class Checkpointer:
    """Saves and restores ``(step, state pytree, JSON metadata)`` under ``workdir``.

    Args:
      workdir: checkpoint directory (created; probed for writing and free space).
      max_to_keep: how many most recent checkpoints to keep.
      save_every: :meth:`save` without ``force`` only writes steps divisible by this.
      async_save: write in a background thread after the arrays are copied to the host;
        :meth:`wait` blocks until written.
      min_free_bytes: free space required at construction, and on top of the state's size
        at each save.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        max_to_keep: int = 3,
        save_every: int = 1,
        async_save: bool = True,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
    ):
        if "://" in str(workdir):
            raise ValueError(f"only local or mounted paths are supported, got {workdir}")
        for name, value in (("max_to_keep", max_to_keep), ("save_every", save_every)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if min_free_bytes < 0:
            raise ValueError(f"min_free_bytes must be >= 0, got {min_free_bytes}")
        self.directory = Path(workdir).absolute()
        self.min_free_bytes = int(min_free_bytes)
        self.save_every = int(save_every)
        check_directory(self.directory, min_free_bytes=self.min_free_bytes)
        pause = os.environ.get(PAUSE_ENV)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(max_to_keep),
            enable_async_checkpointing=async_save,
            create=True,
            temporary_path_class=pausing_commit(pause) if pause else None,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(_STATE, _META)
        )
        self._async = bool(async_save)
        self._writing: int | None = None  # the step of an asynchronous save maybe in flight

    # -- queries ---------------------------------------------------------------------------
    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints on disk, ascending."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None when there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    # -- saving ----------------------------------------------------------------------------
    def save(
        self, step: int, state: PyTree, meta: dict | None = None, *, force: bool = False
    ) -> bool:
        """Writes ``state`` and ``meta`` as checkpoint ``step`` (asynchronously if enabled).

        Skipped (returns False) when ``step`` exists already, or, unless ``force``, when it
        is not a multiple of ``save_every`` or older than the latest checkpoint.

        Args:
          step: the training step the state belongs to.
          state: pytree of arrays (sharded ``jax.Array`` s are written per shard).
          meta: JSON-serialisable dict (config, data position ...), returned by restore.
          force: save regardless of ``save_every``.

        Returns:
          Whether a checkpoint was started.

        Raises:
          NonFiniteStateError: some leaf holds NaN/Inf (named in the message).
          CheckpointDirError: not enough free space for this state.
          CheckpointWriteError: this save, or an asynchronous one still in flight, failed.
          ValueError: ``meta`` is not JSON-serialisable, or ``step`` is negative.
        """
        if int(step) != step or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step}")
        step = int(step)
        meta = {} if meta is None else meta
        try:
            json.dumps(meta, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"checkpoint meta must be JSON-serialisable: {e}") from e
        steps = self._manager.all_steps()
        if step in steps:
            log.info("checkpoint %s exists already; not saved again", self.directory / str(step))
            return False
        if not force and (step % self.save_every or (steps and step < max(steps))):
            return False
        leaves, bad = integrity.leaf_records(state)
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise NonFiniteStateError(
                f"refusing to save step {step}: NaN/Inf in {shown}; the checkpoints in "
                f"{self.directory} are left as they are"
            )
        self._check_space(state)
        record = {"format": FORMAT_VERSION, "step": step, "meta": meta, "leaves": leaves}
        args = ocp.args.Composite(
            **{_STATE: ocp.args.StandardSave(state), _META: ocp.args.JsonSave(record)}
        )
        # An asynchronous save still in flight must finish first (its failure is its own).
        self.wait()
        with self._write_errors(step):
            started = bool(self._manager.save(step, args=args, force=True))
        self._writing = step if self._async else None
        return started

    @contextlib.contextmanager
    def _write_errors(self, step: int | None):
        """Orbax/TensorStore write failures -> one CheckpointWriteError naming the step."""
        try:
            yield
        except (ValueError, OSError, RuntimeError) as e:  # what Orbax/TensorStore raise
            code = _os_error_code(e)
            cause = f"{os.strerror(code)}; " if code else ""  # OSError's str adds the errno
            raise CheckpointWriteError(
                code or errno.EIO,
                f"writing checkpoint {step} to {self.directory} failed: {cause}{_brief(e)}. "
                f"The complete checkpoints {self.all_steps()} are untouched; free space (or "
                "fix the directory) and restart: the unfinished save is removed then.",
            ) from e

    def _check_space(self, state: PyTree) -> None:
        nbytes = sum(int(getattr(x, "nbytes", 8)) for x in jax.tree.leaves(state))
        need = nbytes // jax.process_count() + self.min_free_bytes
        free = shutil.disk_usage(self.directory).free
        if free < need:
            raise CheckpointDirError(
                errno.ENOSPC,
                f"not enough space in {self.directory} for a checkpoint: {free / 2**20:.1f} MiB "
                f"free, {need / 2**20:.1f} MiB needed (state + min_free_bytes)",
            )

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk (re-raises their errors)."""
        step, self._writing = self._writing, None
        with self._write_errors(step):
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases Orbax's resources."""
        self.wait()
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- restoring -------------------------------------------------------------------------
    def restore(self, step: int, abstract_state: PyTree) -> tuple[PyTree, dict]:
        """Restores and verifies checkpoint ``step``.

        Args:
          step: a step of :meth:`all_steps`.
          abstract_state: tree of ``jax.ShapeDtypeStruct`` (with ``sharding`` to place the
            arrays, e.g. from ``jax.eval_shape`` plus the shardings) or of live arrays
            (their shardings are used).

        Returns:
          ``(state, meta)``.

        Raises:
          ValueError: the checkpoint holds a state of another structure (not corruption).
          CorruptCheckpointError: it cannot be read, or its arrays fail the checksums.
        """
        target = integrity.abstract_like(abstract_state)
        try:
            record = self._manager.restore(
                step, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()})
            )[_META]
            stored = record["leaves"]
            layout = {p: (tuple(r["shape"]), r["dtype"]) for p, r in stored.items()}
        except Exception as e:
            raise CorruptCheckpointError(f"metadata unreadable: {_brief(e)}") from e
        expected = integrity.layout(target)
        if layout != expected:
            missing = sorted(set(expected) - set(layout))[:5]
            extra = sorted(set(layout) - set(expected))[:5]
            changed = sorted(p for p in set(layout) & set(expected) if layout[p] != expected[p])
            raise ValueError(
                f"checkpoint {self.directory / str(step)} holds a different state: leaves "
                f"missing from it {missing}, unexpected {extra}, shape/dtype changed {changed[:5]}"
            )
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(target)})
            )[_STATE]
        except Exception as e:
            raise CorruptCheckpointError(f"arrays unreadable: {_brief(e)}") from e
        leaves, _ = integrity.leaf_records(restored)
        damaged = [p for p, r in leaves.items() if r["checksum"] != stored[p]["checksum"]]
        if damaged:
            raise CorruptCheckpointError(f"checksum mismatch in {', '.join(damaged[:5])}")
        return restored, record["meta"]

    def restore_latest(self, abstract_state: PyTree) -> tuple[int, PyTree, dict] | None:
        """Restores the newest checkpoint that reads back intact.

        A damaged checkpoint is logged (warning naming its directory and the problem),
        renamed to ``<step>.corrupt`` and the one before is tried.

        Args:
          abstract_state: as for :meth:`restore`.

        Returns:
          ``(step, state, meta)``, or None when the directory holds no checkpoint.

        Raises:
          CorruptCheckpointError: checkpoints exist but none of them is intact.
          ValueError: the newest readable checkpoint holds a state of another structure.
        """
        self._manager.reload()
        failures = []
        for step in reversed(self.all_steps()):
            problem = None
            try:
                state, meta = self.restore(step, abstract_state)
            except CorruptCheckpointError as e:
                problem = str(e)
            if _all_processes_agree(problem is None):
                return step, state, meta
            problem = problem or "damaged on another process"
            aside = self._quarantine(step)
            log.warning(
                "checkpoint %s is corrupt (%s); moved to %s, trying the previous one",
                self.directory / str(step),
                problem,
                aside,
            )
            failures.append(f"step {step}: {problem}")
        if failures:
            raise CorruptCheckpointError(
                f"no intact checkpoint in {self.directory}: " + "; ".join(failures)
            )
        return None

    def _quarantine(self, step: int) -> Path:
        """Renames a bad step directory out of Orbax's view (nothing is deleted)."""
        src = self.directory / str(step)
        dst = self.directory / f"{step}.corrupt"
        n = 1
        while dst.exists():
            n += 1
            dst = self.directory / f"{step}.corrupt{n}"
        if jax.process_index() == 0:
            src.rename(dst)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"ssl_jax_checkpoint_quarantine_{step}")
        self._manager.reload()
        return dst
