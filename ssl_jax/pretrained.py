"""A pretrained encoder for downstream use, in three lines.

    from ssl_jax.pretrained import load_encoder
    encoder = load_encoder("runs/simclr")      # the latest checkpoint of a main.py run
    features = encoder(images)                 # uint8 [B, H, W, 3] -> float32 [B, F]

The encoder is the method's frozen backbone (``Method.encode``, eval mode) behind the
preprocessing ``ssl_jax.evaluate`` uses: images whose side differs from the config's
``data.image_size`` are resized (shorter side to ``image_size / 0.875``, bilinear,
antialiased) and centre cropped like ``ssl_jax.data.eval_batches`` does, then scaled to
[0, 1] and normalised with the mean / std of the training recipe. Calls are cut into
fixed-size, zero-padded batches of ``config.eval.batch_size`` rows by default, the batches
evaluation runs, so an image's features do not depend on what else is in the call and equal
bit for bit those ``ssl_jax.evaluate`` computes for it on the same devices.
"""

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorflow as tf
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import build, evaluate
from ssl_jax.data.pipeline import resize_center_crop
from ssl_jax.eval.features import extract_features
from ssl_jax.train.checkpoint import Checkpointer
from ssl_jax.train.state import create_train_state

__all__ = ["EVAL_CROP_FRACTION", "Encoder", "load_encoder"]

PyTree = Any
EVAL_CROP_FRACTION = 0.875
"""Evaluation's centre crop (``data.eval_batches``' default) for images of another size: the
short side goes to ``image_size / EVAL_CROP_FRACTION``, then ``image_size`` is cropped."""
# The length of the training split only sets schedules inside a method (EMA momentum,
# temperatures, frozen-prototype epochs), never the network or its preprocessing; any
# positive value rebuilds the same network, so loading needs no access to the data.
_ANY_RUN_LENGTH = 1


@dataclasses.dataclass(frozen=True, eq=False)
class Encoder:
    """A restored backbone: ``encoder(uint8 images [B, H, W, 3]) -> float32 [B, F]``.

    Attributes:
      config: the run's config (``config.json`` of the work dir).
      step: the training step of the restored checkpoint.
      variables: ``{'params', 'batch_stats'}`` of the method's network, replicated on
        ``mesh``.
      encode_fn: the pure function ``(variables, uint8 images [B, S, S, 3]) -> [B, F]``
        (normalisation included), e.g. to ``jax.jit`` into a downstream model.
      mesh: the local devices; every call shards its batches over them.
      batch_size: rows per compiled batch (calls are split and zero-padded to it).
      feature_dim: ``F``.
    """

    config: ml_collections.ConfigDict
    step: int
    variables: dict[str, PyTree]
    encode_fn: Callable[[PyTree, jax.Array], jax.Array]
    mesh: Mesh
    batch_size: int
    feature_dim: int

    @property
    def image_size(self) -> int:
        """The side the backbone sees (``config.data.image_size``)."""
        return int(self.config.data.image_size)

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """Checks ``images`` and brings them to ``image_size`` as evaluation does.

        Args:
          images: uint8 ``[B, H, W, 3]`` (numpy or any array convertible to it).

        Returns:
          uint8 ``[B, image_size, image_size, 3]``: unchanged when already that size, else
          resized (shorter side to ``image_size / 0.875``) and centre cropped.
        """
        x = np.asarray(images)
        if x.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 RGB in [0, 255], got dtype {x.dtype}; the encoder "
                "normalises them itself (convert with np.asarray(img, np.uint8))"
            )
        if x.ndim != 4 or x.shape[-1] != 3:
            hint = " (one image? add a batch axis: images[None])" if x.ndim == 3 else ""
            raise ValueError(f"images must have shape [B, H, W, 3], got {x.shape}{hint}")
        if 0 in x.shape:
            raise ValueError(f"images is empty: shape {x.shape}")
        s = self.image_size
        if x.shape[1:3] == (s, s):
            return x
        return np.stack(
            [resize_center_crop(tf.constant(im), s, EVAL_CROP_FRACTION).numpy() for im in x]
        )

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features of ``images`` (uint8 ``[B, H, W, 3]``, any ``B``, ``H``, ``W``).

        Returns:
          float32 ``[B, feature_dim]`` numpy array, row i for image i.
        """
        x = self.preprocess(images)
        bs = self.batch_size

        def batches():
            for i in range(0, x.shape[0], bs):
                chunk = x[i : i + bs]
                pad = np.zeros((bs - chunk.shape[0], *chunk.shape[1:]), np.uint8)
                yield {
                    "image": np.concatenate([chunk, pad]),
                    "mask": np.arange(bs) < chunk.shape[0],
                }

        feats, _ = extract_features(
            self.encode_fn, batches(), mesh=self.mesh, variables=self.variables
        )
        return feats


def _local_mesh() -> Mesh:
    devices = jax.local_devices()
    return jax.make_mesh(
        (len(devices),),
        ("data",),
        axis_types=(jax.sharding.AxisType.Auto,),
        devices=devices,
    )


def _abstract_state(config: ml_collections.ConfigDict, method, mesh: Mesh) -> PyTree:
    """Shapes, dtypes and (replicated) shardings of the run's TrainState, computed not built."""
    tx = build.optimizer(config, _ANY_RUN_LENGTH)
    probe_tx = optax.adam(config.optim.probe_lr)  # as ssl_jax.train.loop.Trainer
    size = int(config.data.image_size)
    sample = jax.ShapeDtypeStruct((config.data.batch_size, size, size, 3), jnp.uint8)
    shapes = jax.eval_shape(
        lambda x: create_train_state(
            method,
            tx,
            probe_tx,
            jax.random.key(0),
            x,
            num_classes=config.data.num_classes,
        ),
        sample,
    )
    replicated = NamedSharding(mesh, P())
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shapes
    )


def load_encoder(
    workdir: str | Path,
    *,
    step: int | None = None,
    batch_size: int | None = None,
) -> Encoder:
    """Restores a run's backbone for downstream use, with its evaluation preprocessing.

    The method is rebuilt from ``workdir/config.json`` and the parameters and BatchNorm
    statistics come from the checkpoint (checksums verified, see
    ``ssl_jax.train.checkpoint``). The training data is not needed.

    Args:
      workdir: work dir of a ``ssl_jax.main`` run (``config.json`` and ``checkpoints/``).
      step: the checkpoint to restore; None: the latest intact one.
      batch_size: rows per compiled batch; None: ``config.eval.batch_size``, which makes
        the features bitwise those of ``ssl_jax.evaluate``. Smaller is faster for a few
        images at a time (features then agree to float rounding).

    Returns:
      The :class:`Encoder`.

    Raises:
      FileNotFoundError: ``workdir``, its ``config.json`` or any checkpoint (or ``step``)
        is missing.
      ValueError: ``config.json`` is not a config of this library, or ``batch_size < 1``.

    References:
      Goyal et al., "Scaling and Benchmarking Self-Supervised Visual Representation
      Learning", ICCV 2019 (frozen-feature transfer).
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"work dir {workdir} does not exist")
    config = evaluate.load_config(workdir)
    ckpt_dir = workdir / "checkpoints"
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(
            f"no checkpoints under {workdir}: train first (python -m ssl_jax.main ... "
            f"--workdir {workdir})"
        )
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    mesh = _local_mesh()
    try:
        method = build.method(config, _ANY_RUN_LENGTH)
        abstract = _abstract_state(config, method, mesh)
        encode_fn = evaluate.encode_fn_for(config, method)
    except (AttributeError, KeyError) as e:
        raise ValueError(f"{workdir / 'config.json'} is not a ssl_jax run config: {e}") from e
    with Checkpointer(ckpt_dir, async_save=False, min_free_bytes=0) as ckpt:
        steps = ckpt.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {ckpt_dir}: train first")
        if step is None:
            step, state, _ = ckpt.restore_latest(abstract)
        elif step in steps:
            state, _ = ckpt.restore(step, abstract)
        else:
            raise FileNotFoundError(f"no checkpoint of step {step} in {ckpt_dir}; has {steps}")
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    rows = batch_size or max(1, config.eval.batch_size // jax.process_count())
    multiple = len(mesh.devices.flat)
    rows = -(-rows // multiple) * multiple
    size = int(config.data.image_size)
    feature_dim = jax.eval_shape(
        encode_fn, variables, jax.ShapeDtypeStruct((rows, size, size, 3), jnp.uint8)
    ).shape[-1]
    return Encoder(
        config=config,
        step=int(step),
        variables=variables,
        encode_fn=encode_fn,
        mesh=mesh,
        batch_size=rows,
        feature_dim=int(feature_dim),
    )
