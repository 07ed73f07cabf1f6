"""Fixtures for the data tests: a small real CIFAR-10 subset from the shared archive.

The subset (20 images per class and split, 400 JPEGs) is extracted once per test session
and prepared once as a TFDS dataset; tests that need their own copy use ``tmp_path``.
"""

import subprocess
import tarfile
from pathlib import Path

import pytest

PER_CLASS = 20
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@pytest.fixture(scope="session")
def cifar_subset_dir(cifar_archive, tmp_path_factory) -> Path:
    """``root/{train,test}/<class>/00NN.jpg``, the first 20 JPEGs of each class and split."""
    root = tmp_path_factory.mktemp("cifar_subset")
    pattern = "*/00[01]?.jpg"  # 0000..0019
    # GNU tar streams the .xz once; much faster than tarfile member lookups.
    subprocess.run(
        ["tar", "-xJf", str(cifar_archive), "-C", str(root), "--wildcards", pattern], check=True
    )
    n = len(list(root.glob("*/*/*.jpg")))
    assert n == 2 * len(CLASSES) * PER_CLASS, n
    return root


@pytest.fixture(scope="session")
def cifar_subset_archive(cifar_subset_dir, tmp_path_factory) -> Path:
    """The subset as an uncompressed ``.tar`` (the same layout as the shared archive)."""
    path = tmp_path_factory.mktemp("cifar_subset_tar") / "cifar10-sub.tar"
    with tarfile.open(path, "w") as tar:
        for split in ("train", "test"):
            tar.add(cifar_subset_dir / split, arcname=split)
    return path


@pytest.fixture(scope="session")
def cifar_subset_source(cifar_subset_dir, tmp_path_factory):
    """The subset prepared once as TFDS dataset ``cifar_sub`` (a ``DataSource``)."""
    from ssl_jax import data

    data_dir = tmp_path_factory.mktemp("tfds_data")
    return data.resolve_source(f"folder:{cifar_subset_dir}", data_dir=data_dir)
