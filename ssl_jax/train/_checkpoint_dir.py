"""The checkpoint directory: probed before training, cleaned of unfinished saves, and the
test hook that pauses a save just before Orbax commits it (see :mod:`ssl_jax.train.checkpoint`).
"""

import asyncio
import errno
import logging
import os
import shutil
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

log = logging.getLogger("ssl_jax.train.checkpoint")

DEFAULT_MIN_FREE_BYTES = 100 * 2**20
PAUSE_ENV = "SSL_JAX_CHECKPOINT_PAUSE"  # the test hook of ssl_jax.train.checkpoint's docstring


class CheckpointDirError(OSError):
    """The checkpoint directory cannot be used (not writable, or too little free space)."""


def check_directory(directory: Path, *, min_free_bytes: int = DEFAULT_MIN_FREE_BYTES) -> None:
    """Creates ``directory`` and proves it is writable and has ``min_free_bytes`` free.

    Raises:
      CheckpointDirError: naming the directory and what is wrong.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointDirError(
            e.errno, f"cannot create checkpoint directory {directory}: {e.strerror or e}"
        ) from e
    probe = directory / f".write-probe-{jax.process_index()}-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise CheckpointDirError(
            e.errno, f"checkpoint directory {directory} is not writable: {e.strerror or e}"
        ) from e
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    free = shutil.disk_usage(directory).free
    if free < min_free_bytes:
        raise CheckpointDirError(
            errno.ENOSPC,
            f"checkpoint directory {directory} has {free / 2**20:.1f} MiB free, "
            f"less than the {min_free_bytes / 2**20:.1f} MiB required",
        )


def remove_partial_saves(directory: str | os.PathLike) -> list[Path]:
    """Deletes the unfinished saves (Orbax temporary step directories) in ``directory``.

    Only the owner of the directory (the training run) may call this: it would also delete
    a save in progress by another process.

    Args:
      directory: a checkpoint directory.

    Returns:
      The directories removed (on process 0; the other processes return ``[]``).
    """
    removed = []
    if jax.process_index() == 0:
        for tmp in ocp.step.all_temporary_paths(Path(directory)):
            path = Path(tmp.get())
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            log.warning("removed the unfinished checkpoint save %s", path)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("ssl_jax_remove_partial_saves")
    return removed


def pausing_commit(spec: str) -> type:
    """Orbax's atomic-rename commit, blocking first at the step of ``PAUSE_ENV`` (tests)."""
    step, _, ready = spec.partition(":")
    if not step.isdigit() or not ready:
        raise ValueError(f"{PAUSE_ENV} must be '<step>:<file>', got {spec!r}")

    class PausingRename(ocp.path.atomicity.AtomicRenameTemporaryPath):
        async def finalize(self, *args, **kwargs):
            if self.get_final().name == step:
                log.warning("%s: pausing before committing %s", PAUSE_ENV, self.get_final())
                Path(ready).write_text(str(os.getpid()))
                await asyncio.sleep(600.0)  # the test kills us first
            return await super().finalize(*args, **kwargs)

    return PausingRename
