"""Every method's CIFAR-10 and ImageNet config files: load, validate, build (no training)."""

import pytest

from ssl_jax import augment, build, build_methods, methods
from ssl_jax import config as cfg
from tests.conftest import load_config

CLASSES = {
    "simclr": methods.SimCLR,
    "byol": methods.BYOL,
    "moco_v2": methods.MoCoV2,
    "moco_v3": methods.MoCoV3,
    "swav": methods.SwAV,
    "dino": methods.DINO,
    "simsiam": methods.SimSiam,
    "barlow_twins": methods.BarlowTwins,
    "vicreg": methods.VICReg,
    "rotation": methods.RotationPrediction,
    "mae": methods.MAE,
}
IMAGENET_TRAIN = 1_281_167
CIFAR_TRAIN = 50_000


def test_every_method_has_a_builder_and_is_a_known_method():
    assert set(CLASSES) <= set(build_methods.BUILDERS)
    assert set(CLASSES) <= set(cfg.METHODS)


@pytest.mark.parametrize("method", sorted(CLASSES))
@pytest.mark.parametrize("dataset", ["cifar10", "imagenet"])
def test_config_loads_validates_and_builds(method, dataset):
    n = CIFAR_TRAIN if dataset == "cifar10" else IMAGENET_TRAIN
    for variant in ("", "tiny", "demo"):
        c = load_config(f"{method}_{dataset}.py", variant)
        assert c.method == method
        cfg.validate(c, num_devices=8)
        augment.view_sizes(
            c.augment.recipe,
            image_size=c.data.image_size,
            num_local_crops=c.augment.num_local_crops,
            local_size=c.augment.local_size,
        )
        m = build.method(c, n)
        assert type(m) is CLASSES[method]
        build.optimizer(c, n)
    c = load_config(f"{method}_{dataset}.py", "")
    assert c.data.image_size == (32 if dataset == "cifar10" else 224)


def test_paper_settings_that_matter():
    c = load_config("moco_v2_cifar10.py", "")
    assert c.train.ema_base == c.train.ema_final == 0.99 and c.moco.queue_size == 4096
    c = load_config("moco_v2_imagenet.py", "")
    assert c.train.ema_base == c.train.ema_final == 0.999 and c.moco.queue_size == 65536
    assert c.loss.temperature == 0.2 and not c.moco.symmetric
    m = build.method(load_config("moco_v3_imagenet.py", ""), IMAGENET_TRAIN)
    assert m.net.projector.hidden_dims == [4096, 4096] and m.net.projector.last_bn
    m = build.method(load_config("swav_imagenet.py", ""), IMAGENET_TRAIN)
    assert m.net.predictor.num_prototypes == 3000 and m.freeze_prototypes_steps == 312
    assert (m.temperature, m.epsilon, m.sinkhorn_iters, m.queue_size) == (0.1, 0.05, 3, 0)
    m = build.method(load_config("swav_cifar10.py", ""), CIFAR_TRAIN)
    assert (m.queue_size, m.queue_start_step, m.freeze_prototypes_steps) == (3840, 9750, 390)
    m = build.method(load_config("dino_imagenet.py", ""), IMAGENET_TRAIN)
    assert m.net.encoder.hidden_size == 384 and m.net.encoder.patch_size == 16
    assert (m.ema_base, m.student_temp, m.warmup_teacher_temp, m.teacher_temp) == (
        0.996,
        0.1,
        0.04,
        0.07,
    )
    assert m.warmup_teacher_temp_steps == 30 * (IMAGENET_TRAIN // 1024)
    m = build.method(load_config("mae_imagenet.py", ""), IMAGENET_TRAIN)
    assert m.net.encoder.hidden_size == 768 and m.net.decoder.depth == 8
    c = load_config("mae_imagenet.py", "")
    assert (c.optim.name, c.optim.b2, c.optim.weight_decay) == ("adamw", 0.95, 0.05)
    m = build.method(load_config("simsiam_imagenet.py", ""), IMAGENET_TRAIN)
    assert m.net.projector.out_dim == 2048 and m.net.predictor.hidden_dims == [512]
    m = build.method(load_config("barlow_twins_imagenet.py", ""), IMAGENET_TRAIN)
    assert m.net.projector.out_dim == 8192 and m.lambda_ == 0.0051


def test_tiny_variants_shrink_method_fields():
    assert load_config("moco_v2_cifar10.py").moco.queue_size == 64
    assert load_config("swav_cifar10.py").swav.num_prototypes == 32
    assert load_config("dino_cifar10.py").dino.out_dim == 64
    assert load_config("mae_cifar10.py").mae.decoder_depth == 1


def test_builders_reject_unusable_configs():
    c = load_config("mae_cifar10.py")
    c.model.encoder = "convnet"
    with pytest.raises(ValueError, match="ViT"):
        build.method(c, CIFAR_TRAIN)
    c = load_config("swav_cifar10.py")
    c.swav.freeze_prototypes_epochs = -1.0
    with pytest.raises(ValueError, match="epochs"):
        build.method(c, CIFAR_TRAIN)


@pytest.mark.parametrize("method", ["swav", "dino", "mae"])
def test_imagenet_step_traces_at_full_resolution(method):
    """Shapes only (``jax.eval_shape``, nothing compiled): the 224px recipes with 96px local
    crops (SwAV, DINO on ViT-S/16) and MAE's ViT-B/16 + decoder fit through the shared step."""
    import jax
    import jax.numpy as jnp
    import optax

    from ssl_jax.train.state import create_train_state
    from ssl_jax.train.step import make_step_fn

    c = load_config(f"{method}_imagenet.py", "")
    c.data.batch_size = 8
    m, tx, probe_tx = (
        build.method(c, IMAGENET_TRAIN),
        build.optimizer(c, IMAGENET_TRAIN),
        optax.sgd(0.1),
    )
    images = jax.ShapeDtypeStruct((8, 224, 224, 3), jnp.uint8)
    state = jax.eval_shape(
        lambda k, x: create_train_state(m, tx, probe_tx, k, x, num_classes=1000),
        jax.random.key(0),
        images,
    )
    step = make_step_fn(m, tx, probe_tx, lr_schedule=build.lr_schedule(c, IMAGENET_TRAIN))
    batch = {"image": images, "label": jax.ShapeDtypeStruct((8,), jnp.int32)}
    new_state, metrics = jax.eval_shape(step, state, batch, jax.random.key(1))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert all(v.shape == () for v in metrics.values())
    if method == "dino":
        assert state.aux["center"].shape == (65536,)
