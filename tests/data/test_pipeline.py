"""tf.data host pipelines on real CIFAR-10 JPEGs: shuffling, resume, sharding, eval padding."""

import collections
import hashlib
import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from ssl_jax import data

N = 200  # images per split in the subset


def _key(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


def _stream(batches, n_batches):
    rows = [b for b in itertools.islice(batches, n_batches)]
    return np.concatenate([b["image"] for b in rows]), np.concatenate([b["label"] for b in rows])


@pytest.fixture(scope="module")
def split_images(cifar_subset_source):
    """Every train/test image of the subset decoded by TFDS, keyed by content hash."""
    out = {}
    for split in ("train", "test"):
        ds = tfds.as_numpy(cifar_subset_source.builder.as_dataset(split=split))
        out[split] = {_key(ex["image"]): (ex["label"], ex["file_name"].decode()) for ex in ds}
        assert len(out[split]) == N  # no duplicate images in the subset
    return out


def test_train_batch_format_and_epoch_is_a_permutation(cifar_subset_source, split_images):
    it = data.train_batches(cifar_subset_source, batch_size=16, image_size=32, seed=0)
    first = next(it)
    assert set(first) == {"image", "label"}
    assert first["image"].shape == (16, 32, 32, 3) and first["image"].dtype == np.uint8
    assert first["label"].shape == (16,) and first["label"].dtype == np.int32
    images, labels = _stream(itertools.chain([first], it), 26)  # 416 rows: 2 epochs + 16
    epoch0, epoch1 = [_key(x) for x in images[:N]], [_key(x) for x in images[N : 2 * N]]
    assert sorted(epoch0) == sorted(split_images["train"]) == sorted(epoch1)
    assert epoch0 != epoch1  # reshuffled each epoch
    for k, label in zip(epoch0, labels[:N], strict=True):
        assert split_images["train"][k][0] == label


def test_decoded_pixels_are_the_files(cifar_subset_source, cifar_subset_dir, split_images):
    import tensorflow as tf

    images, _ = _stream(
        data.train_batches(cifar_subset_source, batch_size=8, image_size=32, seed=3), 1
    )
    for image in images:
        path = cifar_subset_dir / split_images["train"][_key(image)][1]
        np.testing.assert_array_equal(image, tf.io.decode_jpeg(path.read_bytes()).numpy())
        # PIL's libjpeg build rounds a little differently; the pixels still agree closely.
        diff = np.abs(image.astype(int) - np.asarray(Image.open(path), dtype=int))
        assert diff.max() <= 8 and diff.mean() < 1.5, (diff.max(), diff.mean())


def test_same_seed_same_stream_other_seed_differs(cifar_subset_source):
    a, _ = _stream(data.train_batches(cifar_subset_source, batch_size=16, image_size=32, seed=5), 3)
    b, _ = _stream(data.train_batches(cifar_subset_source, batch_size=16, image_size=32, seed=5), 3)
    c, _ = _stream(data.train_batches(cifar_subset_source, batch_size=16, image_size=32, seed=6), 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("start", [5, 12, 13, 30])  # inside, at and across epoch boundaries
def test_resume_matches_uninterrupted_run(cifar_subset_source, start):
    full, full_labels = _stream(
        data.train_batches(cifar_subset_source, batch_size=16, image_size=32, seed=1), start + 3
    )
    resumed, labels = _stream(
        data.train_batches(
            cifar_subset_source, batch_size=16, image_size=32, seed=1, start_step=start
        ),
        3,
    )
    np.testing.assert_array_equal(resumed, full[16 * start :])
    np.testing.assert_array_equal(labels, full_labels[16 * start :])


def test_processes_read_disjoint_parts_that_cover_the_split(cifar_subset_source, split_images):
    seen = []
    for p in range(3):
        it = data.train_batches(
            cifar_subset_source,
            batch_size=7,
            image_size=32,
            seed=0,
            process_index=p,
            process_count=3,
        )
        n_local = len(range(N)[p::3])  # even split sizes: 67, 67, 66
        images, _ = _stream(it, -(-n_local // 7))
        seen.append({_key(x) for x in images[:n_local]})
        assert len(seen[-1]) == n_local
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert set.union(*seen) == set(split_images["train"])


@pytest.mark.parametrize("process_count", [1, 2, 3])
def test_eval_is_exact_and_aligned_across_processes(
    cifar_subset_source, split_images, process_count
):
    counts, keys = [], collections.Counter()
    for p in range(process_count):
        batches = list(
            data.eval_batches(
                cifar_subset_source,
                batch_size=32,
                image_size=32,
                process_index=p,
                process_count=process_count,
            )
        )
        counts.append(len(batches))
        for b in batches:
            assert b["image"].shape == (32, 32, 32, 3) and b["mask"].dtype == bool
            assert (b["label"][~b["mask"]] == -1).all() and not b["image"][~b["mask"]].any()
            for image, label in zip(b["image"][b["mask"]], b["label"][b["mask"]], strict=True):
                keys[_key(image)] += 1
                assert split_images["test"][_key(image)][0] == label
    expected = data.num_eval_batches(
        cifar_subset_source, split="test", batch_size=32, process_count=process_count
    )
    assert counts == [expected] * process_count  # same count everywhere: collectives line up
    assert set(keys) == set(split_images["test"]) and set(keys.values()) == {1}


def test_eval_order_is_deterministic(cifar_subset_source):
    a = [b["image"] for b in data.eval_batches(cifar_subset_source, batch_size=64, image_size=32)]
    b = [b["image"] for b in data.eval_batches(cifar_subset_source, batch_size=64, image_size=32)]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))


def test_resize_when_size_differs(cifar_subset_source):
    (batch,) = itertools.islice(
        data.train_batches(cifar_subset_source, batch_size=4, image_size=48, seed=0), 1
    )
    assert batch["image"].shape == (4, 48, 48, 3) and batch["image"].dtype == np.uint8
    ev = next(data.eval_batches(cifar_subset_source, batch_size=4, image_size=24))
    # 32 -> ceil(24 / 0.875) = 28 (antialiased bilinear), centre crop 24: compare with TF's own.
    import tensorflow as tf

    first = next(data.eval_batches(cifar_subset_source, batch_size=4, image_size=32))["image"][0]
    ref = tf.image.resize(first, (28, 28), antialias=True)[2:26, 2:26]
    ref = np.clip(np.round(ref.numpy()), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(ev["image"][0], ref)


def test_host_crops(cifar_subset_source):
    specs = data.crop_specs("dino_cifar", num_local_crops=3)
    assert [s.size for s in specs] == [32, 32, 16, 16, 16]
    assert specs[0].scale == (0.4, 1.0) and specs[2].scale == (0.05, 0.4)

    def first(seed, start=0):
        it = data.train_batches(
            cifar_subset_source, batch_size=4, image_size=32, seed=seed, host_crops=specs,
            start_step=start,
        )  # fmt: skip
        return next(it)

    a, b, c = first(0), first(0), first(1)
    assert set(a) == {"views", "label"} and len(a["views"]) == 5
    assert [v.shape for v in a["views"]] == [(4, 32, 32, 3)] * 2 + [(4, 16, 16, 3)] * 3
    assert all(v.dtype == np.uint8 for v in a["views"])
    for x, y in zip(a["views"], b["views"], strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a["views"][0], c["views"][0])
    assert not np.array_equal(a["views"][0], a["views"][1])  # two different crops
    # Resuming reproduces the crops too (they are keyed by stream position).
    later = list(
        itertools.islice(
            data.train_batches(
                cifar_subset_source, batch_size=4, image_size=32, seed=0, host_crops=specs
            ),
            3,
        )
    )[2]
    np.testing.assert_array_equal(first(0, start=2)["views"][3], later["views"][3])


def test_host_crop_of_full_box_is_a_resize():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    encoded = tf.io.encode_png(image)
    # Scale (1, 1) and the image's own aspect ratio leave only the whole image.
    spec = data.CropSpec(size=10, scale=(1.0, 1.0), ratio=(1.5, 1.5))
    (out,) = data.crop_views(encoded, tf.constant(0, tf.int64), specs=[spec], seed=0)
    ref = tf.image.resize(image, (10, 10), antialias=True)
    np.testing.assert_array_equal(
        out.numpy(), np.clip(np.round(ref.numpy()), 0, 255).astype(np.uint8)
    )
    jpeg = tf.io.encode_jpeg(image, quality=95)
    (out_j,) = data.crop_views(jpeg, tf.constant(0, tf.int64), specs=[spec], seed=0)
    ref_j = tf.image.resize(tf.io.decode_jpeg(jpeg), (10, 10), antialias=True)
    np.testing.assert_array_equal(
        out_j.numpy(), np.clip(np.round(ref_j.numpy()), 0, 255).astype(np.uint8)
    )


def test_bad_arguments(cifar_subset_source):
    with pytest.raises(ValueError, match="process_index < process_count"):
        data.train_batches(
            cifar_subset_source,
            batch_size=4,
            image_size=32,
            seed=0,
            process_index=2,
            process_count=2,
        )
    with pytest.raises(ValueError, match="batch_size must be positive"):
        data.eval_batches(cifar_subset_source, batch_size=0, image_size=32)
    with pytest.raises(ValueError, match="no split 'validation'"):
        data.train_batches(
            cifar_subset_source, split="validation", batch_size=4, image_size=32, seed=0
        )
