"""Image folder -> TFDS preparation: layout, labels, conversions, errors, reuse."""

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from ssl_jax import data
from ssl_jax.data import folder


def _write(path: Path, array: np.ndarray, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if array.ndim == 2 else "RGB"
    Image.fromarray(array, mode).save(path, format=fmt)


def _rand(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _tiny_folder(root: Path, *, size=(6, 5), classes=("b_cls", "a_cls"), per_class=2) -> Path:
    for s, split in enumerate(("train", "test")):
        for c, cls in enumerate(classes):
            for i in range(per_class):
                _write(
                    root / split / cls / f"{i}.png", _rand((*size, 3), seed=100 * s + 10 * c + i)
                )
    return root


def _decoded(builder, split: str) -> dict[str, tuple[np.ndarray, int]]:
    ds = builder.as_dataset(split=split)
    return {ex["file_name"].decode(): (ex["image"], int(ex["label"])) for ex in tfds.as_numpy(ds)}


def test_prepares_folder_with_sorted_labels_and_exact_pixels(tmp_path):
    root = _tiny_folder(tmp_path / "imgs")
    builder, meta = data.prepare_image_folder(root, data_dir=tmp_path / "tfds")
    assert builder.info.name == "imgs"
    assert builder.info.features["label"].names == ["a_cls", "b_cls"]  # sorted, not disk order
    assert meta["num_examples"] == {"test": 4, "train": 4} and meta["skipped"] == []
    got = _decoded(builder, "train")
    assert sorted(got) == sorted(f"train/{c}/{i}.png" for c in ("a_cls", "b_cls") for i in (0, 1))
    for name, (image, label) in got.items():
        expect = np.asarray(Image.open(root / name).convert("RGB"))
        np.testing.assert_array_equal(image, expect)  # PNG is lossless
        assert label == ["a_cls", "b_cls"].index(name.split("/")[1])


def test_jpeg_bytes_are_stored_unchanged(cifar_subset_source, cifar_subset_dir):
    ds = cifar_subset_source.builder.as_dataset(
        split="test[:5]", decoders={"image": tfds.decode.SkipDecoding()}
    )
    for ex in tfds.as_numpy(ds):
        assert ex["image"] == (cifar_subset_dir / ex["file_name"].decode()).read_bytes()


def test_grayscale_and_palette_become_rgb(tmp_path):
    root = _tiny_folder(tmp_path / "mixed")
    gray = _rand((6, 5), seed=7)
    _write(root / "train" / "a_cls" / "gray.jpg", gray, fmt="JPEG")
    Image.fromarray(_rand((6, 5, 3), seed=8)).convert("P").save(root / "train/b_cls/pal.png")
    builder, _ = data.prepare_image_folder(root, data_dir=tmp_path / "tfds")
    got = _decoded(builder, "train")
    image, _ = got["train/a_cls/gray.jpg"]
    assert image.shape == (6, 5, 3)
    expect = np.asarray(Image.open(root / "train/a_cls/gray.jpg"))  # decoded luma
    for c in range(3):
        np.testing.assert_array_equal(image[..., c], expect)
    pal, _ = got["train/b_cls/pal.png"]
    np.testing.assert_array_equal(
        pal, np.asarray(Image.open(root / "train/b_cls/pal.png").convert("RGB"))
    )


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"nope.*does not exist"):
        data.prepare_image_folder(tmp_path / "nope", data_dir=tmp_path / "tfds")


def test_missing_data_dir_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"data dir .*not_there does not exist"):
        data.resolve_source(f"folder:{tmp_path}", data_dir=tmp_path / "not_there")


def test_empty_folder_and_empty_split(tmp_path):
    (tmp_path / "empty" / "train" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"empty.*holds no images"):
        data.prepare_image_folder(tmp_path / "empty", data_dir=tmp_path / "tfds")
    root = _tiny_folder(tmp_path / "onesplit")
    (root / "val" / "a_cls").mkdir(parents=True)
    (root / "val" / "a_cls" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"split folder .*val is empty"):
        data.prepare_image_folder(root, data_dir=tmp_path / "tfds")


def test_wrong_layout_is_explained(tmp_path):
    _write(tmp_path / "flat" / "train" / "x.png", _rand((4, 4, 3)))
    with pytest.raises(ValueError, match=r"root/<split>/<class>/<image>; found train/x.png"):
        data.prepare_image_folder(tmp_path / "flat", data_dir=tmp_path / "tfds")


def _corrupt(root: Path) -> Path:
    bad = root / "train" / "b_cls" / "broken.jpg"
    good = io.BytesIO()
    Image.fromarray(_rand((16, 16, 3))).save(good, format="JPEG")
    bad.write_bytes(good.getvalue()[:100])  # truncated JPEG
    (root / "test" / "a_cls" / "zero.png").write_bytes(b"")
    return bad


def test_corrupt_image_is_named(tmp_path):
    root = _tiny_folder(tmp_path / "corrupt")
    _corrupt(root)
    with pytest.raises(ValueError, match=r"cannot read image .*(zero\.png|broken\.jpg)"):
        data.prepare_image_folder(root, data_dir=tmp_path / "tfds")
    assert folder.read_meta(tmp_path / "tfds", "corrupt") is None  # nothing half-written kept


def test_skip_corrupt_counts_and_reports(tmp_path, caplog):
    root = _tiny_folder(tmp_path / "corrupt")
    _corrupt(root)
    source = data.resolve_source(f"folder:{root}", data_dir=tmp_path, skip_corrupt=True)
    assert sorted(source.skipped) == ["test/a_cls/zero.png", "train/b_cls/broken.jpg"]
    assert "2 unreadable image(s) skipped" in source.description
    assert source.num_examples("train") == 4 and source.num_examples("test") == 4
    # The prepared copy is reused, and still refuses to be used silently without the flag.
    with pytest.raises(ValueError, match=r"2 unreadable image\(s\)"):
        data.prepare_image_folder(root, data_dir=tmp_path)


def test_differing_sizes_error_or_resize(tmp_path):
    root = _tiny_folder(tmp_path / "sizes")
    _write(root / "train" / "a_cls" / "big.png", _rand((12, 20, 3)))
    with pytest.raises(ValueError, match=r"differ in size: .* is 6x5 but .*big\.png is 12x20"):
        data.prepare_image_folder(root, data_dir=tmp_path / "tfds")
    builder, _ = data.prepare_image_folder(
        root, data_dir=tmp_path / "tfds", name="sizes_r4", resize=4
    )
    assert builder.info.features["image"].shape == (4, 4, 3)
    big, _ = _decoded(builder, "train")["train/a_cls/big.png"]
    # Shorter side 12 -> 4 (20 -> 7), centre crop 4 x 4: compare with PIL doing the same.
    ref = Image.open(root / "train/a_cls/big.png").resize((7, 4), Image.BILINEAR, reducing_gap=None)
    np.testing.assert_array_equal(big, np.asarray(ref)[:, 1:5])
    builder, _ = data.prepare_image_folder(
        root, data_dir=tmp_path / "tfds", name="sizes_var", variable_size=True
    )
    assert builder.info.features["image"].shape == (None, None, 3)
    assert _decoded(builder, "train")["train/a_cls/big.png"][0].shape == (12, 20, 3)


def test_splits_of_different_sizes_are_caught(tmp_path):
    # Each split is consistent on its own; the dataset is not.
    root = _tiny_folder(tmp_path / "splits")
    for path in (root / "train").rglob("*.png"):
        _write(path, _rand((7, 7, 3)))
    with pytest.raises(ValueError, match=r"differ in size: .*test.* is 6x5 but .*train.* is 7x7"):
        data.prepare_image_folder(root, data_dir=tmp_path / "tfds")


def test_archive_is_prepared_once_and_reused(cifar_subset_archive, tmp_path, caplog):
    builder, meta = data.prepare_image_folder(cifar_subset_archive, data_dir=tmp_path)
    assert builder.info.name == "cifar10_sub"
    assert meta["num_examples"] == {"test": 200, "train": 200}
    assert builder.info.features["label"].names[:3] == ["airplane", "automobile", "bird"]
    side_car = tmp_path / "cifar10_sub" / "1.0.0" / folder.META_FILE
    before = side_car.stat().st_mtime_ns
    caplog.set_level("INFO")
    again, _ = data.prepare_image_folder(cifar_subset_archive, data_dir=tmp_path)
    assert side_car.stat().st_mtime_ns == before and "reusing" in caplog.text
    assert again.info.splits["train"].num_examples == 200
    assert not list(tmp_path.glob(".extract-*"))  # the temporary extraction is gone


def test_prepared_name_from_other_data_is_refused(tmp_path):
    a = _tiny_folder(tmp_path / "a" / "same")
    b = _tiny_folder(tmp_path / "b" / "same", per_class=3)
    data.prepare_image_folder(a, data_dir=tmp_path / "tfds")
    with pytest.raises(ValueError, match=r"prepared from different data"):
        data.prepare_image_folder(b, data_dir=tmp_path / "tfds")


def test_archive_with_top_folder_and_bad_archive(tmp_path):
    root = _tiny_folder(tmp_path / "src")
    with tarfile.open(tmp_path / "wrapped.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="wrapped")
    _, meta = data.prepare_image_folder(tmp_path / "wrapped.tar.gz", data_dir=tmp_path / "d")
    assert meta["num_examples"] == {"test": 4, "train": 4}
    (tmp_path / "bad.tar.xz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match=r"cannot extract archive .*bad\.tar\.xz"):
        data.prepare_image_folder(tmp_path / "bad.tar.xz", data_dir=tmp_path / "d")


def test_dataset_name_and_listing(tmp_path):
    assert folder.dataset_name("/x/cifar10-jpeg.tar.xz") == "cifar10_jpeg"
    assert folder.dataset_name("/x/My Photos") == "my_photos"
    assert folder.dataset_name("/x/2024") == "folder_2024"
    listing = data.list_image_folder(_tiny_folder(tmp_path / "l"))
    assert listing.classes == ("a_cls", "b_cls")
    assert [c for _, c in listing.files["train"]] == ["a_cls", "a_cls", "b_cls", "b_cls"]
    assert json.dumps(listing.files)  # plain, serialisable listing
