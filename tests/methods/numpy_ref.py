"""Plain-numpy objectives, written from the papers, to check what each method logs.

Everything is float64. Each function names the equation or algorithm it follows.
"""

import numpy as np


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(x))


def cosine(a, b):
    return np.sum(normalize(a) * normalize(b), axis=-1)


def nt_xent(z1, z2, t):
    """SimCLR Eq. 1 over the 2N views, mean over anchors."""
    z = normalize(np.concatenate([z1, z2]))
    n = len(z1)
    sim = z @ z.T / t
    np.fill_diagonal(sim, -np.inf)
    pos = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    return float(np.mean(-log_softmax(sim)[np.arange(2 * n), pos]))


def byol(p1, p2, z1, z2):
    """BYOL Eq. 2, symmetrised: sum of 2 - 2 cos over both directions, batch means."""
    return float(np.mean(2 - 2 * cosine(p1, z2)) + np.mean(2 - 2 * cosine(p2, z1)))


def simsiam(p1, p2, z1, z2):
    """SimSiam Eq. 4: 0.5 D(p1, z2) + 0.5 D(p2, z1), D = -cos."""
    return float(-0.5 * np.mean(cosine(p1, z2)) - 0.5 * np.mean(cosine(p2, z1)))


def barlow_twins(z1, z2, lambda_):
    """Barlow Twins Alg. 1: C of batch-standardised views, (1-C_ii)^2 + lambda C_ij^2."""
    z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
    a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + 1e-5)
    b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + 1e-5)
    c = a.T @ b / len(z1)
    on = np.sum((1 - np.diag(c)) ** 2)
    off = np.sum(c**2) - np.sum(np.diag(c) ** 2)
    return on + lambda_ * off, on, off


def vicreg(z1, z2, sim=25.0, std=25.0, cov=1.0):
    """VICReg Eq. 1-6 (official code: variance term halved over the two branches)."""
    z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
    d = z1.shape[1]
    inv = np.mean((z1 - z2) ** 2)

    def terms(z):
        c = np.cov(z, rowvar=False)  # unbiased, (N - 1)
        s = np.sqrt(np.diag(c) + 1e-4)
        return np.mean(np.maximum(0, 1 - s)), (np.sum(c**2) - np.sum(np.diag(c) ** 2)) / d

    v1, c1 = terms(z1)
    v2, c2 = terms(z2)
    var, cv = (v1 + v2) / 2, c1 + c2
    return sim * inv + std * var + cov * cv, inv, var, cv


def sinkhorn(scores, eps, iters):
    """SwAV Alg. 1 ``distributed_sinkhorn`` on one device: returns B * Q^T (rows sum to 1)."""
    q = np.exp(np.asarray(scores, np.float64) / eps).T  # K x B
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    return (q * b).T


def swav(scores, t, eps, iters, num_high_res=2, queue_scores=None):
    """SwAV Eq. 1-3 as ``main_swav.py``: codes of the first crops (queue rows prepended to
    Sinkhorn's input), predicted by every other crop; averaged as the official code."""
    n = len(scores[0])
    loss = 0.0
    for i in range(num_high_res):
        s = scores[i] if queue_scores is None else np.concatenate([queue_scores[i], scores[i]])
        q = sinkhorn(s, eps, iters)[-n:]
        sub = 0.0
        for v in range(len(scores)):
            if v != i:
                sub -= np.mean(np.sum(q * log_softmax(np.asarray(scores[v]) / t), axis=1))
        loss += sub / (len(scores) - 1)
    return loss / num_high_res


def dino(student, teacher, center, student_temp, teacher_temp):
    """DINO Alg. 1 / ``DINOLoss``: mean over (teacher crop iq, student crop v != iq) of
    the batch-mean cross entropy H(softmax((t - c)/tt), softmax(s/ts))."""
    targets = [softmax((np.asarray(t, np.float64) - center) / teacher_temp) for t in teacher]
    terms = []
    for iq, q in enumerate(targets):
        for v, s in enumerate(student):
            if v != iq:
                terms.append(np.mean(-np.sum(q * log_softmax(np.asarray(s) / student_temp), 1)))
    return float(np.mean(terms))


def cross_entropy(logits, labels):
    return float(np.mean(-log_softmax(logits)[np.arange(len(labels)), labels]))


def patchify(x, p):
    """MAE ``patchify``: [B, H, W, C] -> [B, N, p*p*C], row-major patches, (p, p, C) inside."""
    b, h, w, c = x.shape
    out = np.zeros((b, (h // p) * (w // p), p * p * c))
    for i in range(h // p):
        for j in range(w // p):
            out[:, i * (w // p) + j] = x[:, i * p : (i + 1) * p, j * p : (j + 1) * p].reshape(b, -1)
    return out


def mae(pred, target, mask, norm_pix=True):
    """MAE ``forward_loss``: per-patch MSE to (normalised) pixels, mean over masked patches."""
    target = np.asarray(target, np.float64)
    if norm_pix:
        mean = target.mean(-1, keepdims=True)
        var = target.var(-1, keepdims=True, ddof=1)
        target = (target - mean) / np.sqrt(var + 1e-6)
    per_patch = np.mean((np.asarray(pred, np.float64) - target) ** 2, axis=-1)
    return float(np.sum(per_patch * mask) / np.sum(mask))
