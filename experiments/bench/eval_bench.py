"""Frozen-feature extraction (``ssl_jax.eval.extract_features``) of the CIFAR ResNet-18
encoder in evaluation mode, compiled with the train step's XLA:CPU options (the current
code, change 16) and with XLA's defaults (``baselines.eval_with_xla_defaults``),
interleaved. ``run.py`` runs it as ``eval_options``."""

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench import baselines, timing
from ssl_jax.eval import extract_features
from ssl_jax.models import ResNet


def features_before_after(
    batch: int, num_batches: int, reps: int, stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
) -> dict:
    """Seconds per extraction of ``num_batches`` batches of ``batch`` 32-px images
    (``stage_sizes``: ResNet-18's by default)."""
    model = ResNet(stage_sizes=tuple(stage_sizes), stem="cifar")
    images = np.random.default_rng(0).integers(0, 256, (batch * num_batches, 32, 32, 3), np.uint8)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    batches = [{"image": images[i * batch : (i + 1) * batch]} for i in range(num_batches)]

    def encode(v, x):
        return model.apply(v, x.astype(jnp.float32) / 255.0, train=False)

    def encode_before(v, x):  # another function object: a jitted extraction of its own
        return encode(v, x)

    def extract(fn):
        return extract_features(fn, batches, variables=variables)[0]

    with baselines.eval_with_xla_defaults():
        before = extract(encode_before)  # compiles (and caches) the extraction without options
    after = extract(encode)
    np.testing.assert_allclose(after, before, rtol=1e-3, atol=1e-3)
    t = timing.interleave(
        {"before": lambda: extract(encode_before), "after": lambda: extract(encode)}, reps=reps
    )
    return dict(
        encoder="resnet18_cifar" if tuple(stage_sizes) == (2, 2, 2, 2) else f"resnet{stage_sizes}",
        batch=batch,
        images=batch * num_batches,
        before_s=t["before"]["median_s"],
        after_s=t["after"]["median_s"],
        timings=t,
    )
