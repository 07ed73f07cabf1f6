"""From a config to plain objects: the one place where names pick implementations.

Only ``ssl_jax.main``, ``ssl_jax.evaluate`` and ``ssl_jax.train.loop`` call this module;
everything it builds takes plain arguments.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax import augment
from ssl_jax import config as cfg
from ssl_jax.methods.base import Method
from ssl_jax.models import heads, resnet, vit
from ssl_jax.models.convnet import ConvNet
from ssl_jax.train import optim

ENCODERS = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "convnet": ConvNet,
    "vit_tiny": vit.vit_tiny,
    "vit_small": vit.vit_small,
    "vit_base": vit.vit_base,
}


def dtype(c: ml_collections.ConfigDict):
    return jnp.bfloat16 if c.model.dtype == "bfloat16" else jnp.float32


def bn_axis(c: ml_collections.ConfigDict) -> str | None:
    """BatchNorm needs an explicit axis only under pmap; under jit it is global already."""
    return PMAP_AXIS if c.train.use_pmap else None


PMAP_AXIS = "batch"


def encoder(c: ml_collections.ConfigDict) -> nn.Module:
    name = c.model.encoder
    if name.startswith("resnet"):
        return ENCODERS[name](
            stem=c.model.stem,
            width_multiplier=c.model.width,
            dtype=dtype(c),
            bn_axis_name=bn_axis(c),
        )
    if name == "convnet":
        return ConvNet(dtype=dtype(c), bn_axis_name=bn_axis(c))
    model = ENCODERS[name](
        patch_size=c.model.patch_size, pool=c.model.get("pool", "cls"), dtype=dtype(c)
    )
    depth = c.model.get("depth", 0)
    return model.clone(depth=depth) if depth > 0 else model


def projector(c: ml_collections.ConfigDict, *, out_dim: int | None = None, **kw) -> nn.Module:
    hidden = [c.head.proj_hidden] * (c.head.proj_layers - 1)
    return heads.MLP(
        hidden_dims=hidden,
        out_dim=out_dim or c.head.proj_dim,
        last_bn=kw.pop("last_bn", c.head.last_bn),
        bn_axis_name=bn_axis(c),
        dtype=dtype(c),
        **kw,
    )


def predictor(c: ml_collections.ConfigDict, *, out_dim: int | None = None) -> nn.Module:
    return heads.MLP(
        hidden_dims=[c.head.pred_hidden],
        out_dim=out_dim or c.head.proj_dim,
        bn_axis_name=bn_axis(c),
        dtype=dtype(c),
    )


def view_fn(c: ml_collections.ConfigDict):
    return functools.partial(
        augment.make_views,
        c.augment.recipe,
        image_size=c.data.image_size,
        num_local_crops=c.augment.num_local_crops,
        local_size=c.augment.local_size,
    )


def lr_schedule(c: ml_collections.ConfigDict, num_train_examples: int) -> optax.Schedule:
    steps = cfg.total_steps(c, num_train_examples)
    per_epoch = cfg.steps_per_epoch(c, num_train_examples)
    warmup = min(steps // 2, round(c.optim.warmup_epochs * per_epoch))
    peak = cfg.peak_learning_rate(c)
    return optim.warmup_cosine_schedule(peak, steps, warmup)


def optimizer(
    c: ml_collections.ConfigDict, num_train_examples: int
) -> optax.GradientTransformation:
    return optim.make_optimizer(
        c.optim.name,
        learning_rate=lr_schedule(c, num_train_examples),
        weight_decay=c.optim.weight_decay,
        momentum=c.optim.momentum,
        clip_grad_norm=c.optim.clip_grad_norm or None,
        b1=c.optim.get("b1", 0.9),
        b2=c.optim.get("b2", 0.999),
        trust_coefficient=c.optim.get("trust_coefficient", 1e-3),
    )


def method(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    """The configured method; schedules inside it (EMA, temperatures) need the run length."""
    from ssl_jax import build_methods  # imports build: keep the cycle lazy

    builder = build_methods.BUILDERS.get(c.method)
    if builder is None:
        raise ValueError(f"method {c.method!r} has no builder in ssl_jax.build_methods")
    return builder(c, num_train_examples)
