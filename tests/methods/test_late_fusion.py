"""The late-fusion patch network with a per-patch fc layer (the papers' fc6) against numpy,
and how the builders wire ``tile_fc`` from a config."""

import jax
import numpy as np
import pytest

from ssl_jax import build
from ssl_jax.methods import LateFusionNet
from ssl_jax.models import MLP, ConvNet
from tests.methods import harness
from tests.models import numpy_ref as ref
from tests.models.common import randomize


def _numpy_forward(params, stats, patches, *, train):
    """``(pooled features [B, K, F], logits)``: ConvNet map per patch, flattened, Dense ->
    BN -> ReLU, the K results concatenated, then the fusion MLP (Dense -> BN -> ReLU ->
    Dense)."""
    b, k = patches.shape[:2]
    x = patches.reshape(b * k, *patches.shape[2:])
    fmap, _ = ref.convnet(
        params["encoder"], stats["encoder"], x, n_blocks=2, train=train, pool=False
    )
    fmap_pooled = fmap.mean((1, 2))
    fc = params["tile_fc"]
    z = ref.dense(fmap.reshape(b * k, -1), fc["out"])
    z, _ = ref.batch_norm(z, fc["out_bn"], stats["tile_fc"]["out_bn"], train=train)
    z = ref.relu(z).reshape(b, -1)
    head = params["head"]
    y = ref.dense(z, head["dense1"])
    y, _ = ref.batch_norm(y, head["bn1"], stats["head"]["bn1"], train=train)
    logits = ref.dense(ref.relu(y), head["out"])
    return fmap_pooled.reshape(b, k, -1), logits


@pytest.mark.parametrize("train", [False, True])
def test_tile_fc_reads_each_patch_map_and_fuses_its_outputs(train):
    net = LateFusionNet(
        encoder=ConvNet(widths=(4, 8)),
        head=MLP([12], 5),
        tile_fc=MLP((), 6, last_bn=True, last_bn_affine=True),
    )
    patches = np.random.default_rng(0).normal(size=(3, 2, 8, 8, 3)).astype(np.float32)
    variables = randomize(net.init(jax.random.key(0), patches, train=False), seed=1)
    assert variables["params"]["tile_fc"]["out"]["kernel"].shape == (4 * 4 * 8, 6)
    assert variables["params"]["head"]["dense1"]["kernel"].shape == (2 * 6, 12)
    (h, logits), _ = net.apply(variables, patches, train=train, mutable=["batch_stats"])
    want_h, want_logits = _numpy_forward(
        ref.f64(variables["params"]),
        ref.f64(variables["batch_stats"]),
        patches.astype(np.float64),
        train=train,
    )
    np.testing.assert_allclose(h, want_h, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(logits, want_logits, rtol=2e-4, atol=2e-4)
    # Whole images still get the encoder's pooled features.
    images = patches[:, 0]
    feats = net.apply(variables, images, method=LateFusionNet.features)
    np.testing.assert_allclose(
        feats, net.encoder.apply(_sub(variables, "encoder"), images, train=False), rtol=1e-6
    )


def _sub(variables, name):
    return {"params": variables["params"][name], "batch_stats": variables["batch_stats"][name]}


@pytest.mark.parametrize("method", ["jigsaw", "patch_position"])
def test_builders_wire_tile_fc_from_the_config(method):
    c = harness.tiny_config(method, **{f"{method}.tile_fc": 32})
    m = build.method(c, 1000)
    assert m.net.tile_fc is not None and m.net.tile_fc.out_dim == 32
    assert m.net.tile_fc.hidden_dims == () and m.net.tile_fc.last_bn
    assert build.method(harness.tiny_config(method), 1000).net.tile_fc is None
    with pytest.raises(ValueError, match="tile_fc must be a width"):
        build.method(harness.tiny_config(method, **{f"{method}.tile_fc": -1}), 1000)
    vit = harness.tiny_config(method, **{f"{method}.tile_fc": 32, "model.encoder": "vit_tiny"})
    with pytest.raises(ValueError, match="tile_fc needs a convolutional encoder"):
        build.method(vit, 1000)
