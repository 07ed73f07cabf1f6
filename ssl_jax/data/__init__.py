"""Input data: TFDS / image-folder sources, tf.data host pipelines, per-process sharding.

source = resolve_source("cifar10", data_dir=None)      # or "folder:/path", "stl10", ...
it = train_batches(source, batch_size=B // jax.process_count(), image_size=32, seed=0,
                   process_index=jax.process_index(), process_count=jax.process_count())
batch = to_global(next(it), mesh)                       # sharded on the 'data' axis
"""

from ssl_jax.data.folder import list_image_folder, prepare_image_folder
from ssl_jax.data.host_crop import CropSpec, crop_specs, crop_views
from ssl_jax.data.pipeline import eval_batches, local_split, num_eval_batches, train_batches
from ssl_jax.data.sharding import to_global
from ssl_jax.data.source import (
    SHARED_CIFAR10_ARCHIVE,
    DataSource,
    default_data_dir,
    resolve_cifar10,
    resolve_source,
)

__all__ = [
    "SHARED_CIFAR10_ARCHIVE",
    "CropSpec",
    "DataSource",
    "crop_specs",
    "crop_views",
    "default_data_dir",
    "eval_batches",
    "list_image_folder",
    "local_split",
    "num_eval_batches",
    "prepare_image_folder",
    "resolve_cifar10",
    "resolve_source",
    "to_global",
    "train_batches",
]
