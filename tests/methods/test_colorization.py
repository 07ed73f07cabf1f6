"""Colourisation through the shared step on 8 devices: Lab targets vs scikit-image, the
rebalanced loss and the running prior vs numpy written from the paper, the feature map."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import color

from ssl_jax import augment, build
from ssl_jax import config as cfg
from ssl_jax.augment import lab
from ssl_jax.methods import Colorization, ColorizationHead, ColorizationNet
from ssl_jax.methods.colorization import ab_targets, lightness_input
from ssl_jax.models import ConvNet
from ssl_jax.models.resnet import ResNet
from tests.conftest import load_config
from tests.methods import harness, numpy_ref

MEAN, STD = augment.CIFAR10_MEAN, augment.CIFAR10_STD


def np_soft_encode(ab, bins, k=5, sigma=5.0):
    """Zhang et al. Sec. 2.1: the k nearest bins, Gaussian weights (sigma), normalised."""
    d2 = np.sum((ab[..., None, :] - bins) ** 2, axis=-1)
    idx = np.argsort(d2, axis=-1, kind="stable")[..., :k]
    w = np.exp(-np.take_along_axis(d2, idx, axis=-1) / (2 * sigma**2))
    z = np.zeros(d2.shape)
    np.put_along_axis(z, idx, w / w.sum(-1, keepdims=True), axis=-1)
    return z


def np_weights(prior, bins, lam=0.5, sigma=5.0):
    """Eq. 4: prior smoothed with a Gaussian over ab, mixed with uniform, inverted, E[w] = 1."""
    d2 = np.sum((bins[:, None] - bins[None]) ** 2, axis=-1)
    p = np.exp(-d2 / (2 * sigma**2)) @ prior
    p /= p.sum()
    w = 1 / ((1 - lam) * p + lam / len(p))
    return w / np.sum(p * w)


def np_rgb(view):
    return np.clip(np.asarray(view, np.float64) * STD + MEAN, 0, 1)


def test_lightness_and_ab_targets_match_skimage():
    rgb = np.random.default_rng(0).uniform(size=(3, 8, 12, 3))
    ref = color.rgb2lab(rgb)
    np.testing.assert_allclose(lightness_input(rgb)[..., 0], (ref[..., 0] - 50) / 50, atol=4e-6)
    blocks = ref[..., 1:].reshape(3, 2, 4, 3, 4, 2).mean(axis=(2, 4))
    got = jax.jit(lambda x: ab_targets(x, downsample=4))(rgb.astype(np.float32))
    np.testing.assert_allclose(got, blocks, atol=2e-4)
    with pytest.raises(ValueError, match="multiple of downsample"):
        ab_targets(rgb, downsample=5)


@pytest.mark.parametrize(
    "encoder",
    [
        ConvNet(widths=(8, 16, 16)),
        ResNet(stage_sizes=(1, 1), stem="cifar", width_multiplier=1),
    ],
    ids=["convnet", "resnet"],
)
def test_feature_map_is_what_the_encoder_pools(encoder):
    net = ColorizationNet(encoder=encoder, head=ColorizationHead(width=8), downsample=4)
    x = jax.random.normal(jax.random.key(0), (4, 16, 16, 1))
    variables = net.init(jax.random.key(1), x, train=True)
    for train in (True, False):
        out = net.apply(variables, x, train=train, mutable=["batch_stats"] if train else False)
        h, fmap, logits = out[0] if train else out
        side = 16 // 2 ** (len(encoder.widths) - 1) if isinstance(encoder, ConvNet) else 8
        assert fmap.shape == (4, side, side, h.shape[-1])
        np.testing.assert_allclose(jnp.mean(fmap, axis=(1, 2)), h, rtol=1e-6, atol=1e-6)
        assert logits.shape == (4, 4, 4, lab.NUM_AB_BINS) and logits.dtype == jnp.float32
    np.testing.assert_array_equal(
        net.apply(variables, x, method=ColorizationNet.features),
        net.apply(variables, x, train=False)[0],
    )


@pytest.fixture(scope="module")
def jit_run():
    return harness.run(harness.tiny_config("colorization"), num_steps=3)


def test_colorization_trains_on_rebalanced_soft_targets(jit_run):
    r = jit_run
    m = r.method
    assert isinstance(m, Colorization) and m.net.downsample == 4
    harness.assert_trains(r)
    bins = lab.ab_bins().astype(np.float64)
    q = len(bins)
    np.testing.assert_allclose(r.states[0].aux["ab_prior"], np.full(q, 1 / q), rtol=1e-6)
    histograms = []
    for i in range(3):
        s = r.states[i]
        (view,) = harness.step_views(r, i)
        rgb = np_rgb(view)
        ref_lab = color.rgb2lab(rgb)
        ab = ref_lab[..., 1:].reshape(harness.BATCH, 8, 4, 8, 4, 2).mean(axis=(2, 4))
        target = np_soft_encode(ab, bins)
        nearest = np.argmin(np.sum((ab[..., None, :] - bins) ** 2, -1), -1)
        histograms.append(np.bincount(nearest.ravel(), minlength=q) / nearest.size)
        prior = np.mean(histograms, axis=0)  # every pixel seen so far, this step's included
        np.testing.assert_allclose(r.states[i + 1].aux["ab_prior"], prior, atol=1e-6)
        # The network saw only the lightness.
        x = (ref_lab[..., :1] - 50) / 50
        _, _, logits = harness.forward_train(m.net, s.params, s.batch_stats, jnp.asarray(x))
        logits = np.asarray(logits, np.float64)
        w = np_weights(prior, bins)[np.argmax(target, -1)]
        ce = -np.sum(target * numpy_ref.log_softmax(logits), -1)
        want = np.mean(w * ce)
        np.testing.assert_allclose(r.metrics[i]["colorization"], want, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(r.metrics[i]["loss"], want, rtol=2e-4, atol=2e-5)
        top1 = np.mean(np.argmax(logits, -1) == nearest)
        np.testing.assert_allclose(r.metrics[i]["colorization_top1"], top1, atol=1.5 / nearest.size)


def test_pmap_matches_jit_and_encode_ignores_colour(jit_run):
    c = harness.tiny_config("colorization", **{"train.use_pmap": True})
    metrics, state = harness.run_pmap(c, num_steps=2)
    for a, b in zip(jit_run.metrics[:2], metrics, strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)
    np.testing.assert_allclose(state.aux["ab_prior"], jit_run.states[2].aux["ab_prior"], atol=1e-6)
    # encode: normalised RGB in, lightness to the encoder; a grey image of the same L*
    # gives the same features.
    m, s = jit_run.method, jit_run.states[2]
    rgb = np.random.default_rng(1).uniform(size=(4, 32, 32, 3))
    grey_lab = color.rgb2lab(rgb) * [1, 0, 0]
    grey = color.lab2rgb(grey_lab)
    encode = jax.jit(lambda x: m.encode(s.params, s.batch_stats, x))
    feats = encode(((rgb - MEAN) / STD).astype(np.float32))
    np.testing.assert_allclose(encode(((grey - MEAN) / STD).astype(np.float32)), feats, atol=1e-4)
    x = (color.rgb2lab(rgb)[..., :1] - 50) / 50
    want = m.net.apply(
        {"params": s.params, "batch_stats": s.batch_stats},
        jnp.asarray(x, jnp.float32),
        method=ColorizationNet.features,
    )
    np.testing.assert_allclose(feats, want, atol=1e-4)


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet"])
def test_colorization_configs(dataset):
    n = 50_000 if dataset == "cifar10" else 1_281_167
    for variant in ("", "tiny", "demo"):
        c = load_config(f"colorization_{dataset}.py", variant)
        assert c.method == "colorization" and c.augment.recipe.startswith("mae")
        cfg.validate(c, num_devices=8)
        m = build.method(c, n)
        assert isinstance(m, Colorization)
        assert (m.num_neighbors, m.sigma, m.lambda_, m.net.downsample) == (5, 5.0, 0.5, 4)
        assert m.net.head.num_bins == 313
        assert m.mean == augment.get_recipe(c.augment.recipe).mean
        build.optimizer(c, n)
    c = load_config(f"colorization_{dataset}.py", "")
    assert c.model.encoder == ("resnet18" if dataset == "cifar10" else "resnet50")
    with pytest.raises(ValueError, match="convolutional encoder"):
        c.model.encoder = "vit_tiny"
        build.method(c, n)


def test_colorization_rejects_bad_arguments():
    from ssl_jax.models import ViT

    def view_fn(key, x):
        return [x]

    def make(encoder=None, head=None, **kw):
        net = ColorizationNet(
            encoder=encoder or ConvNet(widths=(8,)), head=head or ColorizationHead()
        )
        return Colorization(view_fn=view_fn, net=net, **{"mean": MEAN, "std": STD, **kw})

    make()
    with pytest.raises(ValueError, match="convolutional encoder"):
        make(encoder=ViT(patch_size=4, hidden_size=8, depth=1, num_heads=2))
    with pytest.raises(ValueError, match="num_bins"):
        make(head=ColorizationHead(num_bins=300))
    with pytest.raises(ValueError, match="num_neighbors"):
        make(num_neighbors=0)
    with pytest.raises(ValueError, match="lambda_"):
        make(lambda_=1.5)
    with pytest.raises(ValueError, match="std"):
        make(std=(0.2, 0.0, 0.2))
