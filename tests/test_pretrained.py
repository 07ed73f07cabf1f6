"""load_encoder: a trained run's backbone, with the evaluation preprocessing, in three lines."""

import json

import numpy as np
import pytest
from PIL import Image

from ssl_jax import build, data, evaluate
from ssl_jax.eval import extract_features
from ssl_jax.pretrained import load_encoder
from ssl_jax.train import loop
from ssl_jax.train.step import data_mesh
from tests.conftest import load_config


def _config(subset, data_dir, method: str):
    c = load_config(f"{method}_cifar10.py", "tiny")
    c.data.dataset = f"folder:{subset}"
    c.data.data_dir = str(data_dir)
    c.train.num_steps = 3
    c.train.checkpoint_every = 2
    return c


@pytest.fixture(scope="module", params=["simclr"])
def run(request, cifar_subset_dir, tiny_data_dir, tmp_path_factory):
    """A few steps of a ConvNet (BatchNorm) and of a ViT (no BatchNorm) method."""
    c = _config(cifar_subset_dir, tiny_data_dir, request.param)
    workdir = tmp_path_factory.mktemp(f"pretrained_{request.param}")
    state = loop.train(c, workdir)
    return c, workdir, state


def _evaluation_features(c, state):
    """Test-split images and their features, computed the way ssl_jax.evaluate does."""
    source = data.resolve_source(c.data.dataset, data_dir=c.data.data_dir)
    method = build.method(c, source.num_examples(c.data.train_split))
    batches = list(
        data.eval_batches(
            source,
            split=c.data.eval_split,
            batch_size=c.eval.batch_size,
            image_size=c.data.image_size,
        )
    )
    images = np.concatenate([b["image"][b["mask"]] for b in batches])
    feats, _ = extract_features(
        evaluate.encode_fn_for(c, method),
        batches,
        mesh=data_mesh(),
        variables={"params": state.params, "batch_stats": state.batch_stats},
    )
    return images, feats


def test_features_equal_the_evaluation_path(run):
    c, workdir, state = run
    images, expected = _evaluation_features(c, state)
    encoder = load_encoder(workdir)
    assert encoder.step == 3 and encoder.image_size == 32
    feats = encoder(images)
    assert feats.dtype == np.float32 and feats.shape == (len(images), encoder.feature_dim)
    np.testing.assert_array_equal(feats, expected)
    # Any subset, order and call size gives the same rows.
    idx = np.random.default_rng(0).permutation(len(images))[:7]
    np.testing.assert_array_equal(encoder(images[idx]), expected[idx])
    # Smaller compiled batches: the same features up to float rounding.
    small = load_encoder(workdir, batch_size=8)
    assert small.batch_size == 8
    np.testing.assert_allclose(small(images[:20]), expected[:20], rtol=1e-5, atol=1e-5)


def test_step_selects_the_checkpoint(run):
    c, workdir, state = run
    images, latest = _evaluation_features(c, state)
    earlier = load_encoder(workdir, step=2)
    assert earlier.step == 2
    assert not np.array_equal(earlier(images[:16]), latest[:16])
    with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 7 .*\[2, 3\]"):
        load_encoder(workdir, step=7)


def test_other_image_sizes_are_resized_like_the_eval_pipeline(run, tmp_path):
    """Raw 40x52 images == the eval pipeline's resized + centre-cropped 32x32 images."""
    _, workdir, _ = run
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, (6, 40, 52, 3), dtype=np.uint8)
    for split in ("train", "test"):
        for i, im in enumerate(raw):
            path = tmp_path / "folder" / split / f"c{i}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im).save(path)
    source = data.resolve_source(f"folder:{tmp_path / 'folder'}", data_dir=tmp_path)
    batch = next(data.eval_batches(source, split="test", batch_size=6, image_size=32))
    cropped = batch["image"][np.argsort(batch["label"])]  # class c<i> holds image i
    encoder = load_encoder(workdir)
    np.testing.assert_array_equal(encoder.preprocess(raw), cropped)
    np.testing.assert_array_equal(encoder(raw), encoder(cropped))


def test_bad_workdirs_and_images_raise_clear_errors(run, tmp_path):
    _, workdir, _ = run
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_encoder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"config\.json not found"):
        load_encoder(tmp_path)
    (tmp_path / "config.json").write_text((workdir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no checkpoints under"):
        load_encoder(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        load_encoder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"seed": 0}))
    with pytest.raises(ValueError, match="not a ssl_jax run config"):
        load_encoder(tmp_path)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        load_encoder(workdir, batch_size=0)
    encoder = load_encoder(workdir)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="must be uint8"):
        encoder(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"add a batch axis"):
        encoder(images[0])
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        encoder(images[..., :1])
    with pytest.raises(ValueError, match="empty"):
        encoder(images[:0])
