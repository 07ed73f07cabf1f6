"""Feature extraction: padded rows dropped, order kept, single device == sharded mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.eval.features import extract_features

_W = np.random.default_rng(0).normal(size=(4 * 4 * 3, 5)).astype(np.float32)


def encode(images):
    x = images.astype(jnp.float32).reshape(images.shape[0], -1) / 255.0
    return jnp.tanh(x @ _W)


def encode_with(variables, images):
    x = images.astype(jnp.float32).reshape(images.shape[0], -1) / 255.0
    return x @ variables["w"] + variables["b"]


def eval_batches(n, batch, seed=0, *, masked=True, labelled=True):
    """Like an evaluation iterator: fixed-size batches, the last one padded + masked."""
    r = np.random.default_rng(seed)
    images = r.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    labels = r.integers(0, 10, n).astype(np.int32)
    out = []
    for start in range(0, n, batch):
        img, lab = images[start : start + batch], labels[start : start + batch]
        b = {"image": img}
        if masked:
            valid = len(img)
            pad = batch - valid
            b["image"] = np.concatenate([img, np.full((pad, 4, 4, 3), 7, np.uint8)])
            lab = np.concatenate([lab, np.full(pad, 3, np.int32)])
            b["mask"] = np.arange(batch) < valid
        if labelled:
            b["label"] = lab
        out.append(b)
    return out, images, labels


def reference(images):
    x = images.astype(np.float64).reshape(len(images), -1) / 255.0
    return np.tanh(x @ _W)


def test_drops_padding_and_keeps_order():
    batches, images, labels = eval_batches(23, 8)
    feats, got_labels = extract_features(encode, iter(batches))
    assert feats.shape == (23, 5) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, reference(images), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got_labels, labels)


def test_unmasked_short_last_batch_and_missing_labels():
    batches, images, _ = eval_batches(21, 8, masked=False, labelled=False)
    assert len(batches[-1]["image"]) == 5
    feats, labels = extract_features(encode, batches)
    np.testing.assert_allclose(feats, reference(images), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, -1)


def test_sharded_equals_single_device(n_devices):
    mesh = jax.make_mesh((n_devices,), ("data",))
    # 12 rows per batch is not a multiple of the 8 devices: padded inside, then dropped.
    batches, images, labels = eval_batches(30, 12, seed=1)
    single = extract_features(encode, batches)
    sharded = extract_features(encode, batches, mesh=mesh)
    np.testing.assert_allclose(sharded[0], single[0], rtol=1e-6)
    np.testing.assert_array_equal(sharded[1], single[1])
    np.testing.assert_array_equal(sharded[1], labels)
    np.testing.assert_allclose(sharded[0], reference(images), rtol=1e-5, atol=1e-6)


def test_variables_and_max_examples(n_devices):
    r = np.random.default_rng(2)
    variables = {"w": jnp.asarray(r.normal(size=(48, 6)), jnp.float32), "b": jnp.ones(6)}
    batches, images, labels = eval_batches(40, 16, seed=3)
    x = images.astype(np.float64).reshape(40, -1) / 255.0
    want = x @ np.asarray(variables["w"], np.float64) + 1.0
    feats, _ = extract_features(encode_with, batches, variables=variables)
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-5)
    mesh = jax.make_mesh((n_devices,), ("data",))
    feats, got = extract_features(
        encode_with, batches, variables=variables, max_examples=20, mesh=mesh
    )
    assert feats.shape == (20, 6)
    np.testing.assert_allclose(feats, want[:20], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got, labels[:20])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="yielded nothing"):
        extract_features(encode, [])
    with pytest.raises(ValueError, match="'image' key"):
        extract_features(encode, [{"label": np.zeros(2)}])
    with pytest.raises(ValueError, match="label and mask"):
        extract_features(encode, [{"image": np.zeros((2, 4, 4, 3), np.uint8), "label": [1]}])
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        extract_features(lambda im: im, [{"image": np.zeros((2, 4, 4, 3), np.uint8)}])
    with pytest.raises(ValueError, match="max_examples"):
        extract_features(encode, [], max_examples=0)


def test_cpu_extraction_is_compiled_with_the_train_steps_options():
    """On CPU, the extraction takes ``xla_cpu``'s options: a convolution runs in Eigen,
    where XLA's defaults (the benchmark's "before") hand it to YNNPACK; same features."""
    from experiments.bench import baselines, conv_epilogue
    from ssl_jax.eval import features

    rng = np.random.default_rng(3)
    w = jnp.asarray(0.1 * rng.normal(size=(3, 3, 32, 32)), jnp.float32)
    images = rng.normal(size=(8, 8, 8, 32)).astype(np.float32)

    def encode_now(w, x):
        # Nothing YNNPACK would fuse around the convolution: float input, a select after.
        h = conv_epilogue.conv3x3(x, w)
        return jnp.where(h < 0, 0.0, h).mean(axis=(1, 2))

    def encode_before(w, x):  # another function: an extraction compiled (cached) of its own
        return encode_now(w, x)

    def engine_and_features(fn):
        batch = features._host_batch({"image": images}, None, 1)
        text = features._compiled(fn, None, True).lower(w, batch).compile().as_text()
        return conv_epilogue.engine(text), extract_features(fn, [{"image": images}], variables=w)[0]

    now, feats = engine_and_features(encode_now)
    with baselines.eval_with_xla_defaults():
        before, feats_before = engine_and_features(encode_before)
    assert (now, before) == ("Eigen", "YNNPACK")
    np.testing.assert_allclose(feats, feats_before, rtol=1e-5, atol=1e-6)
