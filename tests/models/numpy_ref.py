"""Plain-numpy (float64) forward passes written from the papers, to check the Flax models.

Each function reads weights from a Flax param tree (the only coupling to the code under test
is the parameter naming) and recomputes the network with explicit loops and matmuls.
"""

import math

import numpy as np
from scipy.special import erf


def f64(tree):
    """Converts every leaf of a nested dict to a float64 numpy array."""
    if isinstance(tree, dict):
        return {k: f64(v) for k, v in tree.items()}
    return np.asarray(tree, np.float64)


# ----------------------------------------------------------------------------- conv nets


def conv2d(x, w, stride=1, pad=0):
    """NHWC cross-correlation, kernel [kh, kw, cin, cout], symmetric zero padding."""
    kh, kw = w.shape[:2]
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho = (x.shape[1] - kh) // stride + 1
    wo = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[
                :, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride
            ]
            out += patch @ w[i, j]
    return out


def max_pool(x, k, stride, pad):
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-np.inf)
    ho = (x.shape[1] - k) // stride + 1
    wo = (x.shape[2] - k) // stride + 1
    out = np.full((x.shape[0], ho, wo, x.shape[3]), -np.inf)
    for i in range(k):
        for j in range(k):
            out = np.maximum(
                out,
                x[
                    :,
                    i : i + stride * (ho - 1) + 1 : stride,
                    j : j + stride * (wo - 1) + 1 : stride,
                ],
            )
    return out


def batch_norm(x, p, stats, *, train, momentum=0.9, eps=1e-5):
    """BatchNorm over all axes but the last. Returns (y, new_stats).

    Train: normalise with the batch mean and biased variance; running averages move as
    ``m * old + (1 - m) * batch`` (Flax keeps the biased variance; torch would store the
    unbiased one). Eval: normalise with the running statistics.
    """
    axes = tuple(range(x.ndim - 1))
    if train:
        mean = x.mean(axes)
        var = ((x - mean) ** 2).mean(axes)
        new = {
            "mean": momentum * stats["mean"] + (1 - momentum) * mean,
            "var": momentum * stats["var"] + (1 - momentum) * var,
        }
    else:
        mean, var, new = stats["mean"], stats["var"], stats
    y = (x - mean) / np.sqrt(var + eps)
    if "scale" in p:
        y = y * p["scale"]
    if "bias" in p:
        y = y + p["bias"]
    return y, new


def relu(x):
    return np.maximum(x, 0.0)


def resnet(params, stats, x, *, stage_sizes, bottleneck, stem, train, momentum=0.9, pool=True):
    """ResNet v1.5 (torchvision layout) features (the last map unless ``pool``) and the
    updated BN statistics."""
    new_stats = {}

    def bn(y, name, scope_p, scope_s, scope_new):
        out, scope_new[name] = batch_norm(
            y, scope_p[name], scope_s[name], train=train, momentum=momentum
        )
        return out

    if stem == "imagenet":
        y = conv2d(x, params["stem_conv"]["kernel"], stride=2, pad=3)
        y = relu(bn(y, "stem_bn", params, stats, new_stats))
        y = max_pool(y, 3, 2, 1)
    else:
        y = conv2d(x, params["stem_conv"]["kernel"], stride=1, pad=1)
        y = relu(bn(y, "stem_bn", params, stats, new_stats))
    for i, n_blocks in enumerate(stage_sizes):
        for j in range(n_blocks):
            name = f"stage{i + 1}_block{j + 1}"
            p, s, ns = params[name], stats[name], {}
            stride = 2 if i > 0 and j == 0 else 1
            if bottleneck:
                r = relu(bn(conv2d(y, p["conv1"]["kernel"]), "bn1", p, s, ns))
                r = relu(bn(conv2d(r, p["conv2"]["kernel"], stride, 1), "bn2", p, s, ns))
                r = bn(conv2d(r, p["conv3"]["kernel"]), "bn3", p, s, ns)
            else:
                r = relu(bn(conv2d(y, p["conv1"]["kernel"], stride, 1), "bn1", p, s, ns))
                r = bn(conv2d(r, p["conv2"]["kernel"], 1, 1), "bn2", p, s, ns)
            if "proj_conv" in p:
                short = bn(conv2d(y, p["proj_conv"]["kernel"], stride, 0), "proj_bn", p, s, ns)
            else:
                short = y
            y = relu(short + r)
            new_stats[name] = ns
    return (y.mean((1, 2)) if pool else y), new_stats


def convnet(params, stats, x, *, n_blocks, train, pool=True):
    new_stats = {}
    y = x
    for i in range(1, n_blocks + 1):
        y = conv2d(y, params[f"conv{i}"]["kernel"], 1, 1)
        y, new_stats[f"bn{i}"] = batch_norm(y, params[f"bn{i}"], stats[f"bn{i}"], train=train)
        y = relu(y)
        if i < n_blocks:
            y = max_pool(y, 2, 2, 0)
    return (y.mean((1, 2)) if pool else y), new_stats


# ----------------------------------------------------------------------------- transformers


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def layer_norm(x, p, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def dense(x, p):
    y = x @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention(x, p, num_heads):
    """Multi-head self-attention: per head softmax(q k^T / sqrt(d_h)) v, then out-proj."""
    b, t, d = x.shape
    dh = d // num_heads
    qkv = dense(x, p["qkv"])  # [B, T, 3D] laid out as (3, heads, dh)
    q, k, v = (qkv[..., i * d : (i + 1) * d] for i in range(3))
    out = np.zeros((b, t, d))
    for h in range(num_heads):
        sl = slice(h * dh, (h + 1) * dh)
        weights = softmax(q[..., sl] @ np.swapaxes(k[..., sl], 1, 2) / math.sqrt(dh))
        out[..., sl] = weights @ v[..., sl]
    return dense(out, p["proj"])


def transformer_block(x, p, num_heads):
    x = x + attention(layer_norm(x, p["norm1"]), p["attn"], num_heads)
    return x + dense(gelu(dense(layer_norm(x, p["norm2"]), p["fc1"])), p["fc2"])


def mae_sincos_2d(embed_dim, grid_h, grid_w):
    """MAE's ``get_2d_sincos_pos_embed`` (util/pos_embed.py), generalised to grid_h x grid_w."""
    grid = np.meshgrid(np.arange(grid_w, dtype=np.float64), np.arange(grid_h, dtype=np.float64))
    grid = np.stack(grid, axis=0).reshape(2, 1, grid_h, grid_w)  # grid[0] = w (column) index

    def one_d(dim, pos):
        omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb_h = one_d(embed_dim // 2, grid[0])
    emb_w = one_d(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def vit(params, x, *, patch_size, num_heads, keep_idx=None, token_mask=None):
    """ViT forward: returns (cls [B, D], patch tokens [B, N', D])."""
    b, h, w, c = x.shape
    p = patch_size
    gh, gw = h // p, w // p
    patches = np.zeros((b, gh * gw, p * p * c))
    for r in range(gh):
        for q in range(gw):
            patches[:, r * gw + q] = x[:, r * p : (r + 1) * p, q * p : (q + 1) * p].reshape(b, -1)
    kernel = params["patch_embed"]["kernel"].reshape(p * p * c, -1)
    tokens = patches @ kernel + params["patch_embed"]["bias"]
    d = tokens.shape[-1]
    if token_mask is not None:
        tokens = np.where(token_mask[..., None], params["mask_token"].reshape(d), tokens)
    if "pos_embed" in params:
        table = params["pos_embed"][0]
        cls_pos, patch_pos = table[0], table[1:]
    else:
        cls_pos, patch_pos = np.zeros(d), mae_sincos_2d(d, gh, gw)
    tokens = tokens + patch_pos
    if keep_idx is not None:
        tokens = np.stack([tokens[i, keep_idx[i]] for i in range(b)])
    cls = np.broadcast_to(params["cls_token"].reshape(d) + cls_pos, (b, 1, d))
    tokens = np.concatenate([cls, tokens], axis=1)
    i = 0
    while f"block{i}" in params:
        tokens = transformer_block(tokens, params[f"block{i}"], num_heads)
        i += 1
    tokens = layer_norm(tokens, params["norm"])
    return tokens[:, 0], tokens[:, 1:]


def mae_decoder(params, tokens, restore_idx, *, num_heads, grid_h, grid_w):
    """MAE ``forward_decoder``: embed, append mask tokens, unshuffle, add positions, blocks."""
    x = dense(tokens, params["embed"])
    b, n = restore_idx.shape
    d = x.shape[-1]
    shuffled = np.concatenate(
        [x[:, 1:], np.broadcast_to(params["mask_token"], (b, n + 1 - x.shape[1], d))], axis=1
    )
    unshuffled = np.stack([shuffled[i, restore_idx[i]] for i in range(b)])
    x = np.concatenate([x[:, :1], unshuffled + mae_sincos_2d(d, grid_h, grid_w)], axis=1)
    i = 0
    while f"block{i}" in params:
        x = transformer_block(x, params[f"block{i}"], num_heads)
        i += 1
    return dense(layer_norm(x, params["norm"]), params["pred"])[:, 1:]


# ----------------------------------------------------------------------------- heads


def mlp(params, stats, x, *, n_hidden, use_bn, last_bn, train):
    """Projector / predictor: [Dense -> (BN) -> ReLU] * n_hidden -> Dense -> (BN)."""
    y = x
    for i in range(1, n_hidden + 1):
        y = dense(y, params[f"dense{i}"])
        if use_bn:
            y, _ = batch_norm(y, params[f"bn{i}"], stats[f"bn{i}"], train=train)
        y = relu(y)
    y = dense(y, params["out"])
    if last_bn:
        y, _ = batch_norm(y, params.get("out_bn", {}), stats["out_bn"], train=train)
    return y


def l2_normalize(x, axis):
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def dino_head(params, x, *, num_layers):
    """DINO head (no BN): MLP with GELU, L2-normalised bottleneck, weight-normed last layer."""
    y = x
    for i in range(1, num_layers):
        y = gelu(dense(y, params[f"dense{i}"]))
    y = l2_normalize(dense(y, params["bottleneck"]), axis=-1)
    last = params["last_layer"]
    w = l2_normalize(last["kernel"], axis=0) * last.get("scale", 1.0)
    return y @ w
