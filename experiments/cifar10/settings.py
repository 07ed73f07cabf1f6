"""Per-method settings of the CIFAR-10 benchmark: a CPU form that makes a wall-time budget
count, and the published 200-epoch ResNet-18 recipe for a GPU.

CPU: each method's ``:demo`` config (the 388k-parameter ConvNet, batch 256, 512-wide
projector) with the evaluation protocol of the benchmark (kNN k = 200, T = 0.07 on the full
50k bank, a linear probe on all 50k) and the changes in :data:`CPU_OVERRIDES`, which shrink
heads that would cost more than the backbone and turn schedules written for 200-1000 epochs
into fractions of the run (:data:`RUN_FRACTIONS`, applied once the number of steps that fit
is known, :func:`fit_to_steps`).

GPU (``--gpu``): each method's full config (CIFAR-stem ResNet-18, the paper's batch of
256/512, full augmentation and heads) for 200 epochs (:func:`gpu_config`).
"""

import importlib.util
from pathlib import Path

import ml_collections

from ssl_jax import config as cfg

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
SUPERVISED = "supervised"
GPU_EPOCHS = 200

# Evaluation protocol shared by every row (the kNN k = 200, T = 0.07; full bank).
EVAL = {
    "eval.knn_k": 200,
    "eval.knn_temperature": 0.07,
    "eval.max_train_examples": 0,
    "eval.linear_epochs": 50,
    "eval.linear_lr": 0.1,
    "eval.batch_size": 512,
}

# CPU changes to the ``:demo`` configs, with the reason for each.
CPU_OVERRIDES: dict[str, dict[str, object]] = {
    # BYOL / MoCo v3: the predictor's hidden layer as wide as the demo's 512-wide projector
    # (the papers use equal widths, 4096 both).
    "byol": {"head.pred_hidden": 512},
    "moco_v3": {"head.pred_hidden": 512},
    # DINO: the 2048-wide head to 4096 outputs costs about as much as the ConvNet over 2 + 6
    # crops (~6M multiply-adds per crop against ~15M for a 32-px crop); a short run also
    # needs a teacher that moves (0.9995 barely leaves its initialisation in ~1k steps).
    # The ConvNet's pooled features differ little between images at initialisation, so the
    # centred teacher starts nearly uniform: without BatchNorm in the head and with the
    # teacher temperature warming up to 0.07 its entropy rose to log K within ~20 steps
    # and stayed there (uniform collapse; session-12 runs at batch 64). BatchNorm in the
    # head, a constant teacher temperature of 0.04 and SGD (lightly's CIFAR-10 ResNet
    # recipe: lr 0.06 x B/256, weight decay 5e-4) kept it at ~5.3 nats with the loss
    # falling; LARS with the same head and temperature fell about half as fast.
    "dino": {
        "dino.hidden_dim": 512,
        "dino.bottleneck_dim": 128,
        "dino.out_dim": 1024,
        "dino.use_bn_in_head": True,
        "dino.teacher_temp": 0.04,
        "dino.warmup_teacher_temp": 0.04,
        "train.ema_base": 0.99,
        "optim.name": "sgd",
        "optim.base_lr": 0.06,
        "optim.weight_decay": 5e-4,
    },
    # SwAV: with the config's Sinkhorn epsilon (0.05) the codes of the ConvNet's nearly
    # alike initial projections were close to uniform (entropy 7.25 of ln 3000 = 8.01 nats
    # at batch 256), the predictions followed them, and the projections collapsed onto a
    # subspace the prototypes turned away from: the loss settled at ln K exactly (with or
    # without the queue, with 512 prototypes, with SGD) and the encoder ended below its
    # random initialisation. This is the trivial solution the paper warns of for a strong
    # entropy regularisation ("in practice we keep epsilon low"). Epsilon 0.01 gives sharp
    # codes from the first step (entropy ~4 nats) and the loss falls below ln K
    # (session-13 runs at batch 256, 120 steps). The queue stays off: it was only tried
    # with epsilon 0.05, where it did not help.
    "swav": {"swav.epsilon": 0.01, "swav.queue_size": 0},
    # SimSiam: the paper's CIFAR rate (SGD 0.03 x B/256, wd 5e-4, for 800 epochs) left the
    # ConvNet below its random initialisation after 625 steps (kNN 40.65, linear 48.72
    # against 40.15 / 51.26); solo-learn's CIFAR-10 recipe (SGD 0.5, wd 1e-5, warm-up and
    # cosine) is the one written for a faster start.
    "simsiam": {"optim.base_lr": 0.5, "optim.weight_decay": 1e-5},
    # (Barlow Twins / VICReg keep their 2048-d embeddings, which their losses need, with the
    # demo's 512-wide hidden layers.)
    # ViT methods: one encoder for MAE, MaskFeat and iBOT (and so one pair of baselines),
    # ViT-Ti/8 with 4 blocks (17 tokens). MAE's ViT-S/4 with an 8-block, 512-wide decoder
    # costs ~60x the ConvNet's two views per image; the ``:demo`` configs' ViT-Ti/4 with 4
    # blocks (65 tokens) still ~5x (supervised steps of 256: 7.6 s against 1.5 s; iBOT
    # 11.5 s), which left 0.5-1.8 epochs in the budget: the supervised ViT ended at its
    # random initialisation on the linear probe, MaskFeat's features at its mean HOG
    # prediction, and iBOT got 66 steps (session 14). 8-px patches keep MaskFeat's 4-px HOG
    # cells (2 x 2 per patch, as the paper's 8-px cells in 16-px patches).
    "mae": {
        "model.encoder": "vit_tiny",
        "model.depth": 4,
        "model.patch_size": 8,
        "mae.decoder_dim": 128,
        "mae.decoder_depth": 2,
        "mae.decoder_heads": 4,
    },
    # MaskFeat trains no cls objective: its cls token, the default feature, stayed near its
    # initialisation (1073 steps: kNN 33.49 against 33.22 at random init, std 0.009, eff.
    # rank 8.9). Its features are the mean of the patch tokens, BEiT's linear-probe protocol
    # for masked image models (on a 20k-image bank: 34.35 against 30.44 for a random ViT
    # pooled alike; cls-pooled 31.29 against 30.93).
    "maskfeat": {"model.patch_size": 8, "model.pool": "mean"},
    "ibot": {"model.patch_size": 8},
}

# Schedule lengths given in epochs in the configs, set to these fractions of the CPU run.
RUN_FRACTIONS: dict[str, dict[str, float]] = {
    # Linear warm-up for the LARS / AdamW recipes (their configs warm up for 10 epochs).
    **{
        m: {"optim.warmup_epochs": 0.05}
        for m in (
            *("simclr", "byol", "moco_v3", "swav", "dino", "barlow_twins", "vicreg", "mae"),
            *("nnclr", "maskfeat", "simsiam"),
        )
    },
    "swav": {"optim.warmup_epochs": 0.05, "swav.freeze_prototypes_epochs": 0.05},
    "dino": {
        "optim.warmup_epochs": 0.05,
        "dino.warmup_teacher_temp_epochs": 0.3,
        "dino.freeze_last_layer_epochs": 0.05,
    },
    "ibot": {
        "optim.warmup_epochs": 0.05,
        "ibot.warmup_teacher_temp_epochs": 0.3,
        "ibot.freeze_last_layer_epochs": 0.05,
    },
}

# The supervised baseline's optimiser when the encoder is a ViT. The config's ResNet recipe
# (SGD, lr 0.2 x B/256, no warm-up) diverged on ViT-Ti/4 (cross entropy 2.66 at step 0, 14-25
# from step 20 on; session 14); ViTs are trained from scratch with AdamW and a warm-up: DeiT
# (Touvron et al. 2021) uses lr 5e-4 x B/512, weight decay 0.05, 5 warm-up epochs of 300.
# The CPU runs warm up for a fraction of the run instead (VIT_SUPERVISED_FRACTIONS).
VIT_SUPERVISED = {
    "optim.name": "adamw",
    "optim.base_lr": 2.5e-4,
    "optim.lr_scaling": "linear",
    "optim.weight_decay": 0.05,
    "optim.warmup_epochs": 5,
}
VIT_SUPERVISED_FRACTIONS = {"optim.warmup_epochs": 0.05}

# Model fields a baseline copies from the method it is compared with ("the same encoder").
ENCODER_FIELDS = (
    "model.encoder",
    "model.stem",
    "model.width",
    "model.patch_size",
    "model.depth",
    "model.pool",
    "model.dtype",
)


def load_config(method: str, variant: str = "") -> ml_collections.ConfigDict:
    """``experiments/configs/<method>_cifar10.py:<variant>``, as ``--config path:variant``.

    Args:
      method: snake_case method name.
      variant: ``''`` (paper recipe), ``'tiny'`` or ``'demo'``.

    Returns:
      The config.
    """
    path = config_path(method)
    if not path.exists():
        raise ValueError(f"no CIFAR-10 config for {method!r}: {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"{method}_cifar10", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def config_path(method: str) -> Path:
    return CONFIG_DIR / f"{method}_cifar10.py"


def get_path(c: ml_collections.ConfigDict, path: str):
    """``c['a.b.c']`` for a dotted path."""
    node = c
    for p in path.split("."):
        node = node[p]
    return node


def apply(c: ml_collections.ConfigDict, overrides: dict[str, object]) -> ml_collections.ConfigDict:
    """A copy of ``c`` with dotted-path overrides set (a value may change the field's type,
    e.g. an integer number of epochs becoming a fraction; the parent nodes must exist)."""
    tree = c.to_dict()
    for path, value in overrides.items():
        node = tree
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return ml_collections.ConfigDict(tree)


def cpu_config(
    method: str, *, variant: str = "demo", overrides: dict[str, object] | None = None
) -> ml_collections.ConfigDict:
    """The CPU form of ``method``: its ``variant`` config, the CPU changes, the eval protocol.

    Args:
      method: snake_case method name (a config ``<method>_cifar10.py`` must exist).
      variant: base variant, ``'demo'`` for the benchmark (``'tiny'`` for smoke tests).
      overrides: last-word dotted-path overrides (e.g. ``{'data.batch_size': 16}``).

    Returns:
      The config; ``train.num_steps`` is set later by :func:`fit_to_steps`.
    """
    c = load_config(method, variant)
    c = apply(c, {**EVAL, **CPU_OVERRIDES.get(method, {}), "train.keep_checkpoints": 2})
    return apply(c, overrides or {})


def gpu_config(
    method: str, *, epochs: int = GPU_EPOCHS, overrides: dict[str, object] | None = None
) -> ml_collections.ConfigDict:
    """The published CIFAR-10 recipe of ``method`` (ResNet-18, full heads, the paper's batch
    and augmentation) for ``epochs`` epochs, with the benchmark's evaluation protocol.

    Args:
      method: snake_case method name.
      epochs: training epochs (200: the common CIFAR-10 comparison length, e.g. solo-learn).
      overrides: last-word dotted-path overrides.

    Returns:
      The config.
    """
    c = apply(load_config(method, ""), {**EVAL, "train.epochs": epochs, "train.num_steps": 0})
    return apply(c, overrides or {})


def baseline_config(
    reference: ml_collections.ConfigDict, *, overrides: dict[str, object] | None = None
) -> ml_collections.ConfigDict:
    """The supervised baseline with the encoder, batch, eval protocol and data of
    ``reference`` (the method it is compared with) and the supervised recipe otherwise.

    Args:
      reference: a method's (CPU or GPU) config.
      overrides: last-word dotted-path overrides.

    Returns:
      The supervised config (``train.num_steps`` / ``train.epochs`` as ``reference``); with
      :data:`VIT_SUPERVISED`'s optimiser when the encoder is a ViT.
    """
    c = load_config(SUPERVISED, "")
    if reference.model.encoder.startswith("vit"):
        c = apply(c, VIT_SUPERVISED)
    copied = {p: get_path(reference, p) for p in ENCODER_FIELDS}
    for node in ("data", "eval"):
        copied.update({f"{node}.{k}": v for k, v in reference[node].items()})
    copied.update(
        {
            "train.epochs": reference.train.epochs,
            "train.num_steps": reference.train.num_steps,
            "train.log_every": reference.train.log_every,
            "train.checkpoint_every": reference.train.checkpoint_every,
            "train.keep_checkpoints": reference.train.keep_checkpoints,
            "train.async_checkpoint": reference.train.async_checkpoint,
            "seed": reference.seed,
        }
    )
    return apply(c, {**copied, **(overrides or {})})


def encoder_key(c: ml_collections.ConfigDict) -> str:
    """Names the encoder of a config: runs with equal keys share their baselines."""
    name = c.model.encoder
    if name.startswith("vit"):
        name += f"_p{c.model.patch_size}"
        name += f"_d{c.model.depth}" if c.model.get("depth", 0) > 0 else ""
        name += "_mean" if c.model.get("pool", "cls") == "mean" else ""
    elif name.startswith("resnet"):
        name += f"_{c.model.stem}_w{c.model.width}"
    return name if c.model.dtype == "float32" else f"{name}_{c.model.dtype}"


def fit_to_steps(
    c: ml_collections.ConfigDict, method: str, num_steps: int, num_train_examples: int
) -> ml_collections.ConfigDict:
    """``c`` set to train ``num_steps`` steps, with :data:`RUN_FRACTIONS` schedules.

    Args:
      c: a CPU config.
      method: its method name (picks the fractions).
      num_steps: optimiser steps of the run.
      num_train_examples: size of the training split (steps -> epochs).

    Returns:
      A copy with ``train.num_steps``, ``train.checkpoint_every`` and the schedules set.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    per_epoch = cfg.steps_per_epoch(c, num_train_examples)
    epochs = num_steps / per_epoch
    fractions = run_fractions(c, method)
    overrides = {p: f * epochs for p, f in fractions.items()}
    if "optim.warmup_epochs" in fractions:
        steps = round(fractions["optim.warmup_epochs"] * num_steps)
        overrides["optim.warmup_epochs"] = _exact_epochs(steps, per_epoch)
    overrides["train.num_steps"] = int(num_steps)
    # About five checkpoints a run (each costs a pause on a CPU), at least one per 200 steps.
    overrides["train.checkpoint_every"] = max(1, min(200, num_steps // 5))
    overrides["train.log_every"] = max(1, min(c.train.log_every, num_steps // 50 or 1))
    return apply(c, overrides)


def run_fractions(c: ml_collections.ConfigDict, method: str) -> dict[str, float]:
    """The schedule fractions of ``method`` (:data:`RUN_FRACTIONS`); the supervised baseline
    of a ViT warms up (:data:`VIT_SUPERVISED_FRACTIONS`)."""
    if method == SUPERVISED and c.model.encoder.startswith("vit"):
        return VIT_SUPERVISED_FRACTIONS
    return RUN_FRACTIONS.get(method, {})


def _exact_epochs(steps: int, per_epoch: int) -> float:
    """Epochs ``e`` with ``e * per_epoch`` exactly an integer near ``steps``: the learning-rate
    schedule takes its warm-up as ``warmup_epochs * steps_per_epoch`` and needs an integer."""
    for s in range(steps, steps + per_epoch + 1):
        if (s / per_epoch) * per_epoch == s:
            return s / per_epoch
    return float(steps // per_epoch)


def schedule_notes(method: str) -> str:
    """One line of the CPU changes of ``method`` for the report."""
    notes = _describe(CPU_OVERRIDES.get(method, {}), RUN_FRACTIONS.get(method, {}))
    return notes or "demo config as is"


def supervised_notes(c: ml_collections.ConfigDict) -> str:
    """One line of the supervised baseline's recipe (with a ViT's changes) for the report."""
    note = "supervised_cifar10 recipe; encoder, batch and data of the methods"
    if c.model.encoder.startswith("vit"):
        fractions = run_fractions(c, SUPERVISED)
        overrides = {k: v for k, v in VIT_SUPERVISED.items() if k not in fractions}
        note += "; ViT: " + _describe(overrides, fractions)
    return note


def _describe(overrides: dict[str, object], fractions: dict[str, float]) -> str:
    parts = [f"{k}={v}" for k, v in overrides.items()]
    parts += [f"{k}={f:g} x run" for k, f in fractions.items()]
    return ", ".join(parts)
