"""Source resolution: the CIFAR-10 fallback order, folder sources, clear errors."""

import logging

import pytest
import tensorflow_datasets as tfds

from ssl_jax import data
from ssl_jax.data import source as source_lib


def test_cifar10_from_archive_then_reused(cifar_subset_archive, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    src = data.resolve_cifar10(tmp_path, archive=cifar_subset_archive, download=False)
    assert src.name == "cifar10_jpeg"
    assert (
        "CIFAR-10 JPEG archive" in src.description and str(cifar_subset_archive) in src.description
    )
    assert src.class_names == [
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ]  # fmt: skip
    assert src.num_classes == 10 and src.image_shape == (32, 32, 3)
    assert src.splits == ["test", "train"] and src.num_examples("train") == 200
    assert "CIFAR-10 source:" in caplog.text  # says which it used
    caplog.clear()
    again = data.resolve_cifar10(tmp_path, archive=cifar_subset_archive, download=False)
    assert again.num_examples("test") == 200 and "reusing" in caplog.text


def test_prepared_tfds_cifar10_comes_first(cifar_subset_archive, tmp_path, monkeypatch):
    real_builder = tfds.builder

    class Prepared:
        info = None

        def is_prepared(self):
            return True

    def fake_builder(name, **kw):
        return Prepared() if name == "cifar10" else real_builder(name, **kw)

    monkeypatch.setattr(source_lib.tfds, "builder", fake_builder)
    Prepared.info = type("I", (), {"version": "3.0.2"})()
    src = data.resolve_cifar10(tmp_path, archive=cifar_subset_archive, download=False)
    assert isinstance(src.builder, Prepared)
    assert src.description.startswith("TFDS cifar10 3.0.2 prepared in")
    assert not (tmp_path / "cifar10_jpeg").exists()  # the archive was not touched


def test_cifar10_nothing_found(tmp_path):
    with pytest.raises(ValueError, match=r"no prepared TFDS cifar10 in .*no archive at .*missing"):
        data.resolve_cifar10(tmp_path, archive=tmp_path / "missing.tar.xz", download=False)


def test_default_archive_path_is_next_to_repo():
    assert source_lib.SHARED_CIFAR10_ARCHIVE == (
        source_lib.REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.xz"
    )
    assert (source_lib.REPO_ROOT / "ssl_jax" / "data" / "source.py").exists()


def test_resolve_source_errors(tmp_path, cifar_subset_source):
    with pytest.raises(ValueError, match=r"data\.dataset is empty"):
        data.resolve_source("", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"data dir .*nowhere does not exist"):
        data.resolve_source("cifar10", data_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"unknown dataset 'no_such_ds_xyz'"):
        data.resolve_source("no_such_ds_xyz", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"'cifar100' is not prepared in .* download=False"):
        data.resolve_source("cifar100", data_dir=tmp_path, download=False)
    with pytest.raises(ValueError, match=r"has no split 'validation'"):
        cifar_subset_source.num_examples("validation")


def test_prepared_folder_loads_by_tfds_name(cifar_subset_source):
    # A prepared folder is a plain TFDS dataset: tfds.builder finds it by name.
    b = cifar_subset_source.builder
    again = data.resolve_source(b.info.name, data_dir=b.data_dir.split(f"/{b.info.name}/")[0])
    assert again.description.startswith(f"TFDS {b.info.name} 1.0.0 prepared in")
    assert again.num_examples("train") == 200
