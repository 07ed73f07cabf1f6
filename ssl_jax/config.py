"""Config schema, defaults and up-front validation for ``ssl_jax.main``.

Experiment files (``experiments/configs/<method>_<dataset>.py``) start from
:func:`base_config`, set what their paper's recipe says, and derive a ``tiny`` variant with
:func:`make_tiny`. Everything is checked by :func:`validate` before anything is compiled.
"""

import difflib
import importlib.util
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections

METHODS = (
    "simclr",
    "moco_v2",
    "moco_v3",
    "swav",
    "dino",
    "byol",
    "simsiam",
    "barlow_twins",
    "vicreg",
    "rotation",
    "mae",
    "maskfeat",
    "ibot",
    "colorization",
    "nnclr",
    "patch_position",
    "jigsaw",
    "supervised",
)
ENCODERS = ("resnet18", "resnet34", "resnet50", "convnet", "vit_tiny", "vit_small", "vit_base")
OPTIMIZERS = ("lars", "sgd", "adamw")


def base_config(dataset: str = "cifar10") -> ml_collections.ConfigDict:
    """Defaults shared by every method; CIFAR-10 ResNet-18 unless ``dataset='imagenet2012'``."""
    c = ml_collections.ConfigDict()
    c.method = "simclr"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dataset = dataset  # a TFDS name, or "folder:<path>" for an image folder / archive
    c.data.data_dir = ""  # TFDS data dir; "" = default search (see ssl_jax.data)
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.image_size = 32 if dataset.startswith("cifar") else 224
    c.data.num_classes = 10 if dataset == "cifar10" else 1000
    c.data.batch_size = 512  # global batch, split over all devices and processes
    c.data.skip_corrupt = False
    # How processes share the data: "split" = each reads a disjoint part of the split (IO
    # scales); "batch" = each reads the same global order and keeps its rows of every global
    # batch (results independent of the process count, at P x the decoding work).
    c.data.process_sharding = "split"

    c.augment = ml_collections.ConfigDict()
    c.augment.recipe = "simclr_cifar" if dataset.startswith("cifar") else "simclr"
    c.augment.num_local_crops = 0
    c.augment.local_size = 16 if dataset.startswith("cifar") else 96

    c.model = ml_collections.ConfigDict()
    c.model.encoder = "resnet18" if dataset.startswith("cifar") else "resnet50"
    c.model.stem = "cifar" if dataset.startswith("cifar") else "imagenet"
    c.model.width = 1
    c.model.patch_size = 16
    c.model.depth = 0  # ViT blocks; 0 = the architecture's own (12)
    c.model.pool = "cls"  # ViT image feature: "cls" token or "mean" of patch tokens
    c.model.dtype = "float32"  # or "bfloat16" (compute dtype; params stay float32)

    c.head = ml_collections.ConfigDict()
    c.head.proj_hidden = 2048
    c.head.proj_dim = 128
    c.head.proj_layers = 2
    c.head.pred_hidden = 512
    c.head.last_bn = False

    c.loss = ml_collections.ConfigDict()
    c.loss.temperature = 0.5

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "lars"
    c.optim.base_lr = 0.3  # peak lr = base_lr x scale(batch_size), see lr_scaling
    c.optim.lr_scaling = "linear"  # "linear": x B/256; "sqrt": x sqrt(B) (SimCLR); "none"
    c.optim.weight_decay = 1e-6
    c.optim.momentum = 0.9
    c.optim.warmup_epochs = 10
    c.optim.clip_grad_norm = 0.0  # 0 = off
    c.optim.probe_lr = 1e-3

    c.train = ml_collections.ConfigDict()
    c.train.epochs = 800
    c.train.num_steps = 0  # > 0 overrides epochs
    c.train.log_every = 50
    c.train.checkpoint_every = 1000
    # Steps compiled into one call (``step.multi_step``); checkpoint_every must be a
    # multiple. 0: chosen for the backend (``steps_per_call`` below).
    c.train.steps_per_call = 0
    c.train.keep_checkpoints = 3
    c.train.async_checkpoint = True
    c.train.use_pmap = False
    c.train.skip_nonfinite = False
    c.train.ema_base = 0.996
    c.train.ema_final = 1.0

    c.eval = ml_collections.ConfigDict()
    c.eval.knn_k = 200
    c.eval.knn_temperature = 0.07
    c.eval.linear_epochs = 100
    c.eval.linear_lr = 0.1
    c.eval.max_train_examples = 0  # 0 = all
    c.eval.batch_size = 512

    c.distributed = ml_collections.ConfigDict()
    c.distributed.initialize = False
    c.distributed.coordinator_address = ""
    c.distributed.num_processes = 1
    c.distributed.process_id = 0
    return c


def make_tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A few steps of a small network on CPU, in seconds: for tests and smoke runs."""
    c = ml_collections.ConfigDict(c.to_dict())
    c.data.batch_size = 16
    c.data.image_size = min(c.data.image_size, 32)
    c.augment.local_size = 16
    c.model.encoder = "convnet" if c.model.encoder.startswith("resnet") else "vit_tiny"
    c.model.patch_size = 8
    c.model.depth = 2
    c.head.proj_hidden = 64
    c.head.proj_dim = 32
    c.head.pred_hidden = 32
    c.train.num_steps = 4
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    # One step per call: a run of a few steps spends its time compiling, and a call of k
    # steps is a program k times the size (``train.steps_per_call`` 0, auto, would give 2).
    c.train.steps_per_call = 1
    c.train.async_checkpoint = False
    c.optim.warmup_epochs = 0
    c.eval.linear_epochs = 2
    c.eval.max_train_examples = 256
    c.eval.knn_k = 10
    return c


def make_demo(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The README's main job: a few minutes of real pretraining on CPU, then evaluation."""
    c = ml_collections.ConfigDict(c.to_dict())
    c.data.batch_size = 256
    c.model.encoder = "convnet" if c.model.encoder.startswith("resnet") else c.model.encoder
    c.head.proj_hidden = 512
    c.train.num_steps = 300
    c.train.log_every = 10
    c.train.checkpoint_every = 100
    c.optim.warmup_epochs = 0
    c.eval.linear_epochs = 30
    c.eval.max_train_examples = 10_000
    return c


def variant(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """``path.py:<name>`` selection: '' (the paper recipe), 'tiny' or 'demo'."""
    variants = {"": lambda x: x, "tiny": make_tiny, "demo": make_demo}
    if name not in variants:
        raise ValueError(f"unknown config variant {name!r}; use one of '', 'tiny', 'demo'")
    return variants[name](c)


def _suggest(value: str, options: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(value, options, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


_REPO_ROOT = Path(__file__).resolve().parents[1]


def from_file(
    spec: str | os.PathLike, overrides: Mapping[str, Any] | None = None
) -> ml_collections.ConfigDict:
    """Loads an experiment config as ``--config path.py[:variant]`` does, then overrides.

    Args:
      spec: ``path/to/config.py`` or ``path/to/config.py:variant`` (``tiny``, ``demo``);
        the variant goes to the file's ``get_config``. A relative path is looked up in the
        current directory, then in the repository root (so a notebook in ``notebooks/`` can
        name ``experiments/configs/simclr_cifar10.py``).
      overrides: dotted keys and values, as ``--config.train.num_steps=20`` on the command
        line: ``{"train.num_steps": 20, "data.dataset": "folder:/data/pets"}``. Keys must
        exist in the config; values keep the field's type (an int for a float field is fine).

    Returns:
      The ``ConfigDict``.

    Raises:
      FileNotFoundError: no such config file.
      ValueError: the file has no ``get_config``; an override names an unknown key or has a
        value of the wrong type.
    """
    path_str, _, name = str(spec).partition(":")
    path = Path(path_str).expanduser()
    if not path.is_absolute() and not path.exists() and (_REPO_ROOT / path).exists():
        path = _REPO_ROOT / path
    if not path.is_file():
        raise FileNotFoundError(f"config file {path_str} not found (cwd {Path.cwd()})")
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} defines no get_config()")
    c = module.get_config(name) if ":" in str(spec) else module.get_config()
    for key, value in (overrides or {}).items():
        parts = key.split(".")
        node = c
        for depth, part in enumerate(parts):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                options = tuple(node) if isinstance(node, ml_collections.ConfigDict) else ()
                where = ".".join(parts[:depth]) or "the config"
                raise ValueError(
                    f"override {key!r}: {where} has no field {part!r}.{_suggest(part, options)}"
                )
            if depth < len(parts) - 1:
                node = node[part]
        leaf = parts[-1]
        try:
            node[leaf] = value
        except TypeError as e:
            raise ValueError(f"override {key!r}: {e}") from e
    return c


def validate(c: ml_collections.ConfigDict, *, num_devices: int, num_processes: int = 1) -> None:
    """Raises ValueError with a message that says what to change."""
    if c.method not in METHODS:
        raise ValueError(
            f"Unknown method {c.method!r}.{_suggest(c.method, METHODS)} Known: {', '.join(METHODS)}"
        )
    if c.model.encoder not in ENCODERS:
        raise ValueError(
            f"Unknown model.encoder {c.model.encoder!r}.{_suggest(c.model.encoder, ENCODERS)}"
            f" Known: {', '.join(ENCODERS)}"
        )
    if c.optim.name not in OPTIMIZERS:
        raise ValueError(f"Unknown optim.name {c.optim.name!r}; use one of {OPTIMIZERS}")
    if c.model.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"model.dtype must be 'float32' or 'bfloat16', got {c.model.dtype!r}")
    bs = c.data.batch_size
    if bs <= 0:
        raise ValueError(f"data.batch_size must be positive, got {bs}")
    if bs % num_devices:
        raise ValueError(
            f"data.batch_size={bs} is not divisible by the {num_devices} devices; set "
            f"--config.data.batch_size to a multiple of {num_devices}"
        )
    if bs % num_processes:
        raise ValueError(f"data.batch_size={bs} must be divisible by {num_processes} processes")
    if c.data.process_sharding not in ("split", "batch"):
        raise ValueError(
            f"data.process_sharding must be 'split' or 'batch', got {c.data.process_sharding!r}"
        )
    if c.train.num_steps <= 0 and c.train.epochs <= 0:
        raise ValueError("set train.epochs or train.num_steps to a positive number")
    for name in ("base_lr", "probe_lr"):
        if c.optim[name] <= 0:
            raise ValueError(f"optim.{name} must be > 0, got {c.optim[name]}")
    if c.optim.lr_scaling not in ("linear", "sqrt", "none"):
        raise ValueError(f"optim.lr_scaling must be linear|sqrt|none, got {c.optim.lr_scaling!r}")
    if c.optim.weight_decay < 0:
        raise ValueError(f"optim.weight_decay must be >= 0, got {c.optim.weight_decay}")
    pool = c.model.get("pool", "cls")
    if pool not in ("cls", "mean"):
        raise ValueError(f"model.pool must be 'cls' or 'mean', got {pool!r}")
    if pool != "cls" and not c.model.encoder.startswith("vit"):
        raise ValueError(
            f"model.pool={pool!r} applies to ViT encoders only; {c.model.encoder} always "
            "averages its last feature map"
        )
    if c.model.encoder.startswith("vit") and c.data.image_size % c.model.patch_size:
        raise ValueError(
            f"data.image_size={c.data.image_size} must be a multiple of "
            f"model.patch_size={c.model.patch_size} for a ViT"
        )
    if c.train.checkpoint_every <= 0:
        raise ValueError("train.checkpoint_every must be positive")
    k = c.train.steps_per_call
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"train.steps_per_call must be an integer >= 0 (0: auto), got {k!r}")
    if k and c.train.checkpoint_every % k:
        raise ValueError(
            f"train.checkpoint_every={c.train.checkpoint_every} is not a multiple of "
            f"train.steps_per_call={k}: checkpoints are written between calls; change one "
            "of them"
        )
    _check_values(c)
    check_keys(c)


EXTRA_KEYS = {
    "loss": ("label_smoothing", "lambda_", "scale", "sim_coeff", "std_coeff", "cov_coeff"),
    "optim": ("b1", "b2", "trust_coefficient"),
}
"""Keys some methods add to the shared sections of :func:`base_config` (a method's own
settings go in a section named after it, e.g. ``c.dino``); any other key there is a typo."""


def check_keys(c: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming a key that is not in the schema, with the closest known one.

    ``c.train.chekpoint_every = 5`` in a config file silently adds a key that nothing reads;
    this catches it. Top-level sections outside the schema are a method's own (``c.dino``).
    """
    schema = base_config().to_dict()
    for section in c:
        if section not in schema:
            if not isinstance(c[section], ml_collections.ConfigDict):
                raise ValueError(
                    f"unknown config key {section!r}.{_suggest(section, tuple(schema))}"
                )
            continue
        if not isinstance(schema[section], dict):
            continue
        known = (*schema[section], *EXTRA_KEYS.get(section, ()))
        for key in c[section]:
            if key not in known:
                raise ValueError(
                    f"unknown config key {section}.{key}.{_suggest(key, known)} Known keys of "
                    f"{section}: {', '.join(sorted(known))} (a method-specific key belongs in "
                    "the method's own section, or in config.EXTRA_KEYS)"
                )


def _check_values(c: ml_collections.ConfigDict) -> None:
    """Range checks that would otherwise fail mid-run (or never) with an unrelated error."""
    positive = (
        "data.image_size data.num_classes train.log_every train.keep_checkpoints "
        "eval.knn_k eval.batch_size eval.knn_temperature model.width model.patch_size "
        "head.proj_hidden head.proj_dim head.proj_layers head.pred_hidden loss.temperature "
        "augment.local_size"
    ).split()
    non_negative = "optim.warmup_epochs optim.clip_grad_norm augment.num_local_crops model.depth"
    for path in positive + non_negative.split():
        section, key = path.split(".")
        value = c[section][key]
        if path in positive and not value > 0:
            raise ValueError(f"{path} must be > 0, got {value!r}")
        if not value >= 0:
            raise ValueError(f"{path} must be >= 0, got {value!r}")
    if not 0 <= c.optim.momentum < 1:
        raise ValueError(f"optim.momentum must be in [0, 1), got {c.optim.momentum}")
    for key in ("ema_base", "ema_final"):
        if not 0 <= c.train[key] <= 1:
            raise ValueError(f"train.{key} must be in [0, 1], got {c.train[key]}")
    if c.model.stem not in ("cifar", "imagenet"):
        raise ValueError(
            f"model.stem must be 'cifar' or 'imagenet', got {c.model.stem!r}."
            f"{_suggest(c.model.stem, ('cifar', 'imagenet'))}"
        )
    from ssl_jax import augment  # jax-heavy: keep importing this module light

    if c.augment.recipe not in augment.RECIPES:
        raise ValueError(
            f"Unknown augment.recipe {c.augment.recipe!r}."
            f"{_suggest(c.augment.recipe, tuple(augment.RECIPES))} Known: "
            f"{', '.join(augment.RECIPES)}"
        )


AUTO_STEPS_PER_CALL = {"cpu": 4}
"""``train.steps_per_call = 0`` by backend (others: 1). On CPU every call of a compiled
step pages its whole scratch buffer in anew, and 4 steps per call share one buffer
(``ssl_jax.train.step.multi_step``; 7% faster for a ResNet-18 at batch 64 on 2 cores);
on accelerators several steps per call save little and cost compile time."""


def steps_per_call(c: ml_collections.ConfigDict, platform: str) -> int:
    """``train.steps_per_call``, or for 0 :data:`AUTO_STEPS_PER_CALL`'s value for
    ``platform`` (``jax.default_backend()``), lowered to divide ``train.checkpoint_every``."""
    if c.train.steps_per_call:
        return c.train.steps_per_call
    return math.gcd(AUTO_STEPS_PER_CALL.get(platform, 1), c.train.checkpoint_every)


def total_steps(c: ml_collections.ConfigDict, num_train_examples: int) -> int:
    """``train.num_steps`` if set, else ``train.epochs`` over the training split."""
    if c.train.num_steps > 0:
        return int(c.train.num_steps)
    return int(c.train.epochs * steps_per_epoch(c, num_train_examples))


def peak_learning_rate(c: ml_collections.ConfigDict) -> float:
    scale = {"linear": c.data.batch_size / 256, "sqrt": c.data.batch_size**0.5, "none": 1.0}
    return float(c.optim.base_lr * scale[c.optim.lr_scaling])


def steps_per_epoch(c: ml_collections.ConfigDict, num_train_examples: int) -> int:
    return max(1, num_train_examples // c.data.batch_size)
