"""Colour jitter with two evaluations per slot gives, bit for bit, the views of the former
formulation that evaluated every op in every slot (kept in ``experiments/bench``)."""

import jax
import numpy as np
import pytest

from experiments.bench.baselines import color_jitter_all_ops
from ssl_jax.augment import color

STRENGTHS = [
    dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
    dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, brightness_mode="additive"),
    dict(brightness=0.4, saturation=0.2),
    dict(contrast=0.5, hue=0.5),
    dict(hue=0.1),
    {},
]


@pytest.mark.parametrize("strengths", STRENGTHS)
def test_views_equal_the_all_ops_formulation_bit_for_bit(strengths):
    images = jax.random.uniform(jax.random.key(0), (64, 8, 8, 3))
    keys = jax.random.split(jax.random.key(1), 64)

    def jitter(fn):
        return jax.jit(jax.vmap(lambda k, x: fn(k, x, **strengths)))(keys, images)

    new, old = jitter(color.color_jitter), jitter(color_jitter_all_ops)
    np.testing.assert_array_equal(new, old)
    if strengths:  # the jitter does something, so equality is not the trivial identity
        assert np.abs(np.asarray(new) - np.asarray(images)).max() > 1e-3
