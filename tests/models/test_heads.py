"""Heads: MLP projector/predictor, SwAV prototypes, DINO head, linear classifier."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.models import MLP, DINOHead, LinearClassifier, Prototypes, normalize_prototypes
from tests.models import numpy_ref as ref
from tests.models.common import randomize


def _x(seed, shape=(6, 5)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


MLP_CASES = [
    # hidden_dims, use_bn, last_bn, last_bn_affine, use_bias
    ((8, 6), True, True, False, True),
    ((8,), True, True, True, True),
    ((7,), False, False, False, True),
    ((), False, False, False, False),
]


@pytest.mark.parametrize("hidden, use_bn, last_bn, affine, use_bias", MLP_CASES)
def test_mlp_matches_numpy_and_param_structure(hidden, use_bn, last_bn, affine, use_bias):
    head = MLP(
        hidden_dims=hidden,
        out_dim=4,
        use_bn=use_bn,
        last_bn=last_bn,
        last_bn_affine=affine,
        use_bias=use_bias,
    )
    x = _x(0)
    variables = randomize(head.init(jax.random.key(0), x, train=False), seed=1)
    params = variables["params"]
    for i in range(1, len(hidden) + 1):
        # A bias right before BatchNorm is redundant, so it is never created.
        assert ("bias" in params[f"dense{i}"]) == (use_bias and not use_bn)
    assert ("bias" in params["out"]) == (use_bias and not last_bn)
    if last_bn:
        assert ("out_bn" in params) == affine
    stats = variables.get("batch_stats", {})
    for train in (False, True):
        out, _ = head.apply(variables, x, train=train, mutable=["batch_stats"])
        want = ref.mlp(
            ref.f64(params),
            ref.f64(dict(stats)),
            x.astype(np.float64),
            n_hidden=len(hidden),
            use_bn=use_bn,
            last_bn=last_bn,
            train=train,
        )
        assert out.shape == (6, 4)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_mlp_batch_stats_and_bf16():
    head = MLP(hidden_dims=(8,), out_dim=4, last_bn=True)
    x = _x(2) * 3 + 1
    variables = head.init(jax.random.key(0), x, train=False)
    _, new = head.apply(variables, x, train=True, mutable=["batch_stats"])
    for a, b in zip(jax.tree.leaves(variables["batch_stats"]), jax.tree.leaves(new), strict=True):
        assert not np.allclose(a, b)
    _, same = head.apply(variables, x, train=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, variables["batch_stats"], same["batch_stats"])
    out16 = head.clone(dtype=jnp.bfloat16).apply(variables, x, train=False)
    assert out16.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        out16.astype(np.float32), head.apply(variables, x, train=False), rtol=0.05, atol=0.05
    )


def test_mlp_pmap_bn_axis_name(n_devices):
    head = MLP(hidden_dims=(8,), out_dim=4, last_bn=True)
    x = _x(3, (2 * n_devices, 5))
    variables = head.init(jax.random.key(0), x, train=False)
    want, _ = head.apply(variables, x, train=True, mutable=["batch_stats"])
    mapped = head.clone(bn_axis_name="i")
    got, _ = jax.pmap(
        lambda v, xb: mapped.apply(v, xb, train=True, mutable=["batch_stats"]),
        axis_name="i",
        in_axes=(None, 0),
    )(variables, x.reshape(n_devices, 2, 5))
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4)


def test_prototypes_and_normalize():
    protos = Prototypes(num_prototypes=7)
    z = _x(4, (3, 5))
    params = protos.init(jax.random.key(0), z)["params"]
    assert set(params) == {"kernel"} and params["kernel"].shape == (5, 7)  # no bias
    np.testing.assert_allclose(protos.apply({"params": params}, z), z @ params["kernel"], rtol=1e-5)
    scaled = {"kernel": params["kernel"] * np.arange(1, 8, dtype=np.float32)}
    normed = jax.jit(normalize_prototypes)(scaled)
    kernel = np.asarray(normed["kernel"])
    np.testing.assert_allclose(np.linalg.norm(kernel, axis=0), 1.0, rtol=1e-6)
    # Same directions as before: each column is a positive multiple of the original one.
    np.testing.assert_allclose(
        kernel, ref.l2_normalize(np.asarray(scaled["kernel"], np.float64), 0), rtol=1e-5
    )
    np.testing.assert_allclose(normalize_prototypes(normed)["kernel"], kernel, rtol=1e-6)
    with pytest.raises(ValueError, match="kernel"):
        normalize_prototypes({"weights": kernel})


@pytest.mark.parametrize("num_layers, norm_last_layer", [(3, True), (2, False), (1, True)])
def test_dino_head_matches_numpy(num_layers, norm_last_layer):
    head = DINOHead(
        out_dim=9,
        hidden_dim=8,
        bottleneck_dim=4,
        num_layers=num_layers,
        norm_last_layer=norm_last_layer,
    )
    x = _x(5)
    params = randomize(head.init(jax.random.key(0), x, train=False), seed=6)["params"]
    last = params["last_layer"]
    assert last["kernel"].shape == (4, 9)
    assert ("scale" in last) == (not norm_last_layer)  # g is fixed to 1: no parameter
    assert set(params) == {"last_layer", "bottleneck"} | {f"dense{i}" for i in range(1, num_layers)}
    out = head.apply({"params": params}, x, train=True)
    want = ref.dino_head(ref.f64(params), x.astype(np.float64), num_layers=num_layers)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def test_dino_head_weight_norm_and_gradients():
    head = DINOHead(out_dim=5, hidden_dim=6, bottleneck_dim=3, num_layers=2)
    x = _x(7, (4, 5))
    params = randomize(head.init(jax.random.key(0), x, train=False), seed=8)["params"]
    # The effective last layer has unit-norm columns whatever the scale of v, so outputs
    # are cosine similarities with |out| <= 1 and do not change when v is rescaled.
    scaled = {**params, "last_layer": {"kernel": params["last_layer"]["kernel"] * 7.0}}
    out = head.apply({"params": params}, x, train=False)
    np.testing.assert_allclose(head.apply({"params": scaled}, x, train=False), out, rtol=1e-5)
    assert np.all(np.abs(out) <= 1 + 1e-6)
    with_g = head.clone(norm_last_layer=False)
    g = np.random.default_rng(9).uniform(0.5, 2.0, 5).astype(np.float32)
    pg = {**params, "last_layer": {**params["last_layer"], "scale": g}}
    np.testing.assert_allclose(with_g.apply({"params": pg}, x, train=False), out * g, rtol=1e-5)

    # Gradients of <out, c> w.r.t. the input and the weight-norm direction v vs central
    # finite differences of the float64 numpy head.
    c = np.random.default_rng(10).normal(size=(4, 5))
    p64 = ref.f64(params)

    def loss_np(xx, v):
        p = {**p64, "last_layer": {"kernel": v}}
        return float((ref.dino_head(p, xx, num_layers=2) * c).sum())

    def fd(fn, a, eps=1e-6):
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            hi, lo = a.copy(), a.copy()
            hi[idx] += eps
            lo[idx] -= eps
            g[idx] = (fn(hi) - fn(lo)) / (2 * eps)
        return g

    v64 = p64["last_layer"]["kernel"]
    want_gx = fd(lambda xx: loss_np(xx, v64), x.astype(np.float64))
    want_gv = fd(lambda v: loss_np(x.astype(np.float64), v), v64)

    def loss(p, xx):
        return jnp.sum(head.apply({"params": p}, xx, train=True) * c)

    gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    np.testing.assert_allclose(gx, want_gx, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(gp["last_layer"]["kernel"], want_gv, rtol=1e-3, atol=1e-5)


def test_dino_head_with_bn_and_bf16():
    head = DINOHead(out_dim=9, hidden_dim=8, bottleneck_dim=4, use_bn=True)
    x = _x(11)
    variables = head.init(jax.random.key(0), x, train=False)
    assert set(variables["batch_stats"]) == {"bn1", "bn2"}
    out, new = head.apply(variables, x, train=True, mutable=["batch_stats"])
    assert out.shape == (6, 9)
    assert not np.allclose(
        new["batch_stats"]["bn1"]["mean"], variables["batch_stats"]["bn1"]["mean"]
    )
    out16 = head.clone(dtype=jnp.bfloat16).apply(variables, x, train=False)
    assert out16.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="num_layers"):
        DINOHead(out_dim=3, num_layers=0).init(jax.random.key(0), x, train=False)


@pytest.mark.parametrize("use_bn", [False, True])
def test_linear_classifier(use_bn):
    clf = LinearClassifier(num_classes=3, use_bn=use_bn)
    x = _x(12, (8, 5)) * 2 + 1
    variables = randomize(clf.init(jax.random.key(0), x), seed=13)
    p = ref.f64(variables["params"])["linear"]
    for train in (False, True):
        out, _ = clf.apply(variables, x, train=train, mutable=["batch_stats"])
        feats = x.astype(np.float64)
        if use_bn:
            feats, _ = ref.batch_norm(
                feats, {}, ref.f64(variables["batch_stats"]["bn"]), train=train, eps=1e-6
            )
        np.testing.assert_allclose(out, feats @ p["kernel"] + p["bias"], rtol=1e-4, atol=1e-4)
    assert clf.clone(dtype=jnp.bfloat16).apply(variables, x).dtype == jnp.bfloat16
