"""Checks that the PyTorch peers compute what ssl_jax computes, run before any timing.

A benchmark against a peer that does less (or other) work would be meaningless, so
``run.py`` stops unless: every loss and monitor of ``torch_ref`` equals ssl_jax's on the
same random inputs (values and input gradients), one LARS update equals
``ssl_jax.train.optim.lars``'s, and every case's PyTorch network has exactly the
parameter count of the ssl_jax one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from experiments.bench import jax_side
from experiments.bench.torch_ref import losses as tl
from experiments.bench.torch_ref.methods import Peer
from experiments.bench.torch_ref.optim import LARS
from ssl_jax import build, losses, metrics
from ssl_jax.train import optim

RTOL, ATOL = 2e-4, 2e-5
SWAV_KW = dict(num_high_res=2, temperature=0.1, epsilon=0.05)


def _close(name: str, got, want, failures: list[str]) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape or not np.allclose(got, want, rtol=RTOL, atol=ATOL):
        err = np.max(np.abs(got - want)) if got.shape == want.shape else "shape"
        failures.append(f"{name}: max abs diff {err}")


def _grad_pair(jax_fn, torch_fn, arrays: list[np.ndarray]):
    """Value and input gradients of a scalar function in both frameworks."""
    jv, jg = jax.value_and_grad(lambda *a: jax_fn(*a), argnums=tuple(range(len(arrays))))(
        *[jnp.asarray(a) for a in arrays]
    )
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    tv = torch_fn(*ts)
    tg = torch.autograd.grad(tv, ts, allow_unused=True, materialize_grads=True)
    return (float(jv), [np.asarray(g) for g in jg]), (tv.item(), [g.detach().numpy() for g in tg])


def check_losses(seed: int = 0) -> list[str]:
    """Loss values and gradients, monitors: torch_ref against ssl_jax, float64."""
    jax.config.update("jax_enable_x64", True)
    try:
        return _check_losses(np.random.default_rng(seed))
    finally:
        jax.config.update("jax_enable_x64", False)


def _check_losses(rng) -> list[str]:
    failures: list[str] = []
    for n, d in ((8, 16), (32, 128)):
        z1, z2, p1, p2 = (rng.normal(size=(n, d)) for _ in range(4))
        cases = {
            "nt_xent": (
                lambda a, b: losses.nt_xent_loss(a, b, temperature=0.5),
                lambda a, b: tl.nt_xent(a, b, 0.5),
                [z1, z2],
            ),
            "barlow_twins": (
                lambda a, b: losses.barlow_twins_loss(a, b, lambda_=0.0051)[0],
                lambda a, b: tl.barlow_twins(a, b, 0.0051)[0],
                [z1, z2],
            ),
            "byol": (
                lambda a, b, c, e: losses.byol_symmetric_loss(a, b, c, e),
                tl.byol_symmetric,
                [p1, p2, z1, z2],
            ),
        }
        for name, (jf, tf, arrays) in cases.items():
            (jv, jg), (tv, tg) = _grad_pair(jf, tf, arrays)
            _close(f"{name} value n={n}", tv, jv, failures)
            for i, (a, b) in enumerate(zip(tg, jg, strict=True)):
                _close(f"{name} grad[{i}] n={n}", a, b, failures)
        k = 30
        scores = [rng.normal(size=(n, k)) * 0.5 for _ in range(4)]
        queue = [rng.normal(size=(16, k)) * 0.5 for _ in range(2)]
        for q in (None, queue):
            jf = lambda *s, q=q: losses.swav_loss(
                list(s),
                num_iters=3,
                queue_scores=None if q is None else [jnp.asarray(x) for x in q],
                **SWAV_KW,
            )
            tf = lambda *s, q=q: tl.swav(
                list(s),
                iters=3,
                queue_scores=None if q is None else [torch.tensor(x) for x in q],
                **SWAV_KW,
            )
            (jv, jg), (tv, tg) = _grad_pair(jf, tf, scores)
            tag = "swav" + ("+queue" if q else "")
            _close(f"{tag} value n={n}", tv, jv, failures)
            for i, (a, b) in enumerate(zip(tg, jg, strict=True)):
                _close(f"{tag} grad[{i}] n={n}", a, b, failures)
        mon = tl.monitors(torch.tensor(z1), torch.tensor(z2))
        want = {
            "embedding_std": metrics.embedding_std(jnp.asarray(z1)),
            "alignment": metrics.alignment(jnp.asarray(z1), jnp.asarray(z2)),
            "uniformity": metrics.uniformity(jnp.asarray(z1)),
        }
        for name, value in want.items():
            _close(f"monitor {name} n={n}", mon[name], value, failures)
    return failures


def check_lars(seed: int = 0) -> list[str]:
    """Two LARS updates (the second with momentum) against ``ssl_jax.train.optim.lars``."""
    rng = np.random.default_rng(seed)
    shapes = {"kernel": (3, 3, 4, 5), "dense": (6, 7), "bias": (7,), "scale": (5,)}
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    grads = [{k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()} for _ in "ab"]
    lrs = (0.3, 0.2)
    tx = optim.lars(lambda step: jnp.asarray(lrs)[step], weight_decay=1e-4, momentum=0.9)
    p, state = jax.tree.map(jnp.asarray, params), None
    state = tx.init(p)
    for g in grads:
        updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, p)
        p = optax.apply_updates(p, updates)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = LARS(tp.values(), weight_decay=1e-4, momentum=0.9)
    for g, lr in zip(grads, lrs, strict=True):
        for k, t in tp.items():
            t.grad = torch.tensor(g[k])
        opt.step(lr)
    failures: list[str] = []
    for k in shapes:
        _close(f"lars {k}", tp[k].detach().numpy(), p[k], failures)
    return failures


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def check_param_counts(cases) -> list[str]:
    """Every case's PyTorch network against the ssl_jax method's params, tensor for tensor."""
    failures = []
    for case in cases:
        c = case.config(64)
        method = build.method(c, jax_side.NUM_TRAIN_EXAMPLES)
        images = jnp.zeros((4, 32, 32, 3), jnp.uint8)
        shapes = jax.eval_shape(lambda x, m=method: m.init(jax.random.key(0), x), images)
        want = _count(shapes["params"])
        got = sum(p.numel() for p in Peer(c, channels_last=False).net.parameters())
        if got != want:
            failures.append(f"{case.name}: PyTorch net has {got} parameters, ssl_jax {want}")
    return failures


def check_all(cases) -> None:
    """Raises RuntimeError listing every mismatch."""
    failures = check_losses() + check_lars() + check_param_counts(cases)
    if failures:
        raise RuntimeError("PyTorch peers differ from ssl_jax:\n  " + "\n  ".join(failures))
