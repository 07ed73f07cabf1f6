"""Bad inputs tried on purpose: each gets a specific error before anything is compiled.

Config typos and bad values, grayscale or channel-first batches on the device path, image
sizes a model cannot take, empty folders, a corrupt JPEG, labels the classifiers cannot hold.

Covered where the code lives, not repeated here: images of differing sizes, grayscale and
palette files converted to RGB, folders with no images or an empty split, corrupt images in
``prepare_image_folder`` (``tests/data/test_folder.py``); out-of-range labels of the
supervised loss (``tests/methods/test_supervised.py``), kNN and linear probe training labels
(``tests/eval``); an unknown method name (``tests/train/test_loop.py``); ConvNet/ResNet and
ViT input sizes (``tests/models``).
"""

import io
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from PIL import Image

from ssl_jax import build, data
from ssl_jax import config as cfg
from ssl_jax.train import loop
from ssl_jax.train.state import create_train_state
from ssl_jax.train.step import make_step_fn
from tests.conftest import load_config

ROOT = Path(__file__).resolve().parents[1]


def _tiny(**changes):
    c = load_config("simclr_cifar10.py", "tiny")
    for path, value in changes.items():
        section, key = path.split(".")
        c[section][key] = value
    return c


# -- configs -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ("train", "chekpoint_every", r"train\.chekpoint_every\. Did you mean 'checkpoint_every'"),
        ("optim", "weight_decy", r"optim\.weight_decy\. Did you mean 'weight_decay'"),
        ("data", "batchsize", r"data\.batchsize\. Did you mean 'batch_size'"),
        ("loss", "temprature", r"loss\.temprature\. Did you mean 'temperature'"),
    ],
)
def test_a_typo_in_a_config_file_is_named_with_a_suggestion(section, key, message):
    c = _tiny()
    c[section][key] = 5  # what `c.train.chekpoint_every = 5` in a config file does: a new key
    with pytest.raises(ValueError, match="unknown config key " + message):
        cfg.validate(c, num_devices=8)


def test_unknown_top_level_key_and_method_sections():
    c = _tiny()
    c.sed = 1
    with pytest.raises(ValueError, match=r"unknown config key 'sed'\. Did you mean 'seed'"):
        cfg.validate(c, num_devices=8)
    # A method's own section and the shared-section keys some methods add are not typos.
    c = _tiny()
    c.my_method = ml_collections.ConfigDict({"queue_size": 4})
    c.loss.label_smoothing = 0.1
    c.optim.b2 = 0.95
    cfg.validate(c, num_devices=8)


def test_a_typo_on_the_command_line_is_named_with_a_suggestion(tmp_path):
    # The config is parsed before JAX or TensorFlow is imported: this is quick.
    out = subprocess.run(
        [
            sys.executable, "-m", "ssl_jax.main",
            "--config", "experiments/configs/simclr_cifar10.py:tiny",
            "--workdir", str(tmp_path),
            "--config.train.chekpoint_every=5",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode != 0
    assert 'Did you mean "checkpoint_every" instead of "chekpoint_every"?' in out.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train.log_every": 0}, r"train\.log_every must be > 0, got 0"),
        ({"train.keep_checkpoints": 0}, r"train\.keep_checkpoints must be > 0"),
        ({"data.image_size": -32}, r"data\.image_size must be > 0"),
        ({"data.num_classes": 0}, r"data\.num_classes must be > 0"),
        ({"eval.knn_k": 0}, r"eval\.knn_k must be > 0"),
        ({"eval.batch_size": 0}, r"eval\.batch_size must be > 0"),
        ({"model.width": 0}, r"model\.width must be > 0"),
        ({"head.proj_dim": 0}, r"head\.proj_dim must be > 0"),
        ({"loss.temperature": 0.0}, r"loss\.temperature must be > 0"),
        ({"optim.warmup_epochs": -1}, r"optim\.warmup_epochs must be >= 0"),
        ({"augment.num_local_crops": -2}, r"augment\.num_local_crops must be >= 0"),
        ({"optim.momentum": 1.0}, r"optim\.momentum must be in \[0, 1\), got 1\.0"),
        ({"train.ema_base": 1.5}, r"train\.ema_base must be in \[0, 1\]"),
        ({"model.stem": "cifr"}, r"model\.stem must be .* got 'cifr'\. Did you mean 'cifar'"),
        ({"augment.recipe": "simclr_cifr"}, r"augment\.recipe 'simclr_cifr'\. Did you mean"),
        ({"model.encoder": "resnet19"}, r"model\.encoder 'resnet19'\. Did you mean 'resnet18'"),
        ({"optim.name": "adam"}, r"Unknown optim\.name 'adam'"),
        ({"data.batch_size": 0}, r"data\.batch_size must be positive"),
        ({"model.encoder": "vit_tiny", "data.image_size": 30}, r"must be a multiple of"),
        ({"model.encoder": "vit_tiny", "model.pool": "max"}, r"model\.pool must be 'cls' or"),
        ({"model.pool": "mean"}, r"model\.pool='mean' applies to ViT encoders only"),
    ],
)
def test_bad_config_values_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        cfg.validate(_tiny(**change), num_devices=8)


def test_unknown_config_variant_is_named():
    with pytest.raises(ValueError, match=r"unknown config variant 'tyny'"):
        load_config("simclr_cifar10.py", "tyny")


# -- image batches on the device path ----------------------------------------------------------
@pytest.fixture(scope="module")
def simclr():
    c = _tiny()
    method = build.method(c, 1000)
    tx, probe_tx = build.optimizer(c, 1000), optax.adam(1e-3)
    rgb = jnp.zeros((8, 32, 32, 3), jnp.uint8)
    state = jax.eval_shape(
        lambda x: create_train_state(
            method, tx, probe_tx, jax.random.key(0), x, num_classes=c.data.num_classes
        ),
        rgb,
    )
    step = make_step_fn(method, tx, probe_tx, lr_schedule=build.lr_schedule(c, 1000))
    return method, tx, probe_tx, state, step


BAD_BATCHES = {
    "grayscale": ((8, 32, 32, 1), r"got shape \(8, 32, 32, 1\); grayscale: repeat it to 3"),
    "no channel axis": ((8, 32, 32), r"got shape \(8, 32, 32\)(?!;)"),
    "channels first": ((8, 3, 32, 32), r"got shape \(8, 3, 32, 32\)(?!;)"),
    "RGBA": ((8, 32, 32, 4), r"got shape \(8, 32, 32, 4\)(?!;)"),
}


@pytest.mark.parametrize("kind", sorted(BAD_BATCHES))
def test_non_rgb_batches_are_refused_before_compiling(simclr, kind):
    method, tx, probe_tx, state, step = simclr
    shape, message = BAD_BATCHES[kind]
    images = jnp.zeros(shape, jnp.uint8)
    batch = {"image": images, "label": jnp.zeros((8,), jnp.int32)}
    # The train step (traced only: jax.eval_shape compiles nothing).
    with pytest.raises(ValueError, match=r"batch\['image'\] must be RGB images .*" + message):
        jax.eval_shape(step, state, batch, jax.random.key(0))
    with pytest.raises(ValueError, match=r"sample_images must be RGB images .*" + message):
        create_train_state(method, tx, probe_tx, jax.random.key(0), images, num_classes=10)
    # A method called directly.
    with pytest.raises(ValueError, match=r"images must be \[B, H, W, 3\]"):
        method.views(jax.random.split(jax.random.key(0), shape[0]), images)


# -- folders and labels (through the Trainer, as a run sees them) ------------------------------
def _png(path: Path, seed: int, size=(8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _folder(root: Path, classes=("cat", "dog", "fox"), per_class=8) -> Path:
    for s, split in enumerate(("train", "test")):
        for c, cls in enumerate(classes):
            for i in range(per_class):
                _png(root / split / cls / f"{i}.png", seed=100 * s + 10 * c + i)
    return root


def _trainer_config(root: Path, data_dir: Path, **changes):
    c = _tiny(**changes)
    c.data.dataset = f"folder:{root}"
    c.data.data_dir = str(data_dir)
    c.data.num_classes = changes.get("data.num_classes", 3)
    return c


def test_empty_class_folder_is_named(tmp_path):
    root = _folder(tmp_path / "pets")
    (root / "train" / "owl").mkdir()  # a class whose images never arrived
    (root / "test" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    with pytest.raises(ValueError, match=r"class folder .*pets/train/owl holds no images"):
        data.list_image_folder(root)
    (tmp_path / "tfds").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*pets/train/owl holds no images"):
        loop.Trainer(_trainer_config(root, tmp_path / "tfds"), tmp_path / "run")


def test_empty_folder_is_named_by_the_trainer(tmp_path):
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "tfds").mkdir()
    with pytest.raises(ValueError, match=r"image folder .*empty holds no images"):
        loop.Trainer(_trainer_config(tmp_path / "empty", tmp_path / "tfds"), tmp_path / "run")


def test_corrupt_jpeg_is_named_and_skipped_on_request(tmp_path):
    root = _folder(tmp_path / "pets")
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(jpeg, format="JPEG")
    (root / "train" / "dog" / "broken.jpg").write_bytes(jpeg.getvalue()[:60])  # truncated
    (tmp_path / "tfds").mkdir()
    c = _trainer_config(root, tmp_path / "tfds")
    with pytest.raises(ValueError, match=r"cannot read image .*broken\.jpg.*skip_corrupt=True"):
        loop.Trainer(c, tmp_path / "run")
    c.data.skip_corrupt = True
    trainer = loop.Trainer(c, tmp_path / "run")
    assert trainer.source.skipped == ("train/dog/broken.jpg",)
    assert trainer.num_train_examples == 24


def test_labels_outside_the_classifier_are_refused(tmp_path):
    root = _folder(tmp_path / "pets")
    (tmp_path / "tfds").mkdir()
    # Under jit an out-of-range label is no error, only a silently wrong loss and probe.
    c = _trainer_config(root, tmp_path / "tfds", **{"data.num_classes": 2})
    with pytest.raises(ValueError, match=r"has 3 classes but data\.num_classes=2"):
        loop.Trainer(c, tmp_path / "run")
    c.data.num_classes = 3
    assert loop.Trainer(c, tmp_path / "run").source.num_classes == 3
