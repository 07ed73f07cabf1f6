"""The default CIFAR-10 path: the whole shared archive prepared once (about 30 s) and read.

It is prepared in the default data dir, which tests/conftest.py points at a fresh directory
per test session, so the preparation is done here or by the quickstart notebook, not twice.
"""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ssl_jax import data


@pytest.mark.slow
def test_whole_archive_prepares_and_reads(cifar_archive):
    data_dir = data.default_data_dir()
    src = data.resolve_cifar10(data_dir, archive=cifar_archive, download=False)
    assert src.name == "cifar10_jpeg" and src.skipped == ()
    assert src.num_examples("train") == 50_000 and src.num_examples("test") == 10_000
    for split, per_class in (("train", 5000), ("test", 1000)):
        ds = src.builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
        labels = np.concatenate(
            [b for b in tfds.as_numpy(ds.map(lambda ex: ex["label"]).batch(10_000))]
        )
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [per_class] * 10)
    batch = next(data.train_batches(src, batch_size=256, image_size=32, seed=0))
    assert batch["image"].shape == (256, 32, 32, 3) and len(set(batch["label"].tolist())) == 10
    # Prepared once: a second resolution reuses the copy instead of preparing again.
    again = data.resolve_cifar10(data_dir, archive=cifar_archive, download=False)
    assert again.builder.data_dir == src.builder.data_dir
