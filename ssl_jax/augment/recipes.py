"""Published view recipes as data, and ``make_views`` that turns a uint8 batch into views.

A :class:`ViewRecipe` lists one :class:`ViewSpec` per global view (asymmetric recipes such
as BYOL give the two views different blur/solarisation probabilities) and optionally a
spec for ``num_local_crops`` small multi-crop views (SwAV, DINO). ``RECIPES`` is the one
explicit name -> recipe dict. Each view is computed per image under ``jax.vmap`` with its
own key, so the function works under ``jax.jit`` and keeps the batch sharding of a Mesh.

Two paths: the whole recipe on device from full images (``make_views`` with one array,
right for 32-96 px data), or the geometric crops done on the host by
``ssl_jax.data.host_crop`` and only flip + photometric ops here (``make_views`` with a
sequence of per-view crops, or :func:`photometric_views`), right for 224 px ImageNet JPEGs.

References: Chen et al. 2020 (SimCLR); Chen et al. 2020, "Improved Baselines with Momentum
Contrastive Learning" (MoCo v2); Grill et al. 2020 (BYOL); Caron et al. 2020 (SwAV);
Caron et al. 2021 (DINO); Zbontar et al. 2021 (Barlow Twins); Bardes et al. 2022
(VICReg); He et al. 2022 (MAE).
"""

import dataclasses
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax.augment import blur, color, geometric

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet-1k training images in [0, 1], used by ``normalize``."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet-1k training images in [0, 1]."""
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""Per-channel RGB mean of the CIFAR-10 training images in [0, 1]."""
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""Per-channel RGB standard deviation of the CIFAR-10 training images in [0, 1]."""


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """How one view is made: crop, flip, colour jitter, grayscale, blur, solarise.

    The ops run in that order; each random op is applied with its own probability.

    Attributes:
      scale: ``RandomResizedCrop`` area fraction range.
      ratio: crop aspect-ratio (width / height) range.
      flip_prob: horizontal flip probability.
      brightness: colour-jitter strengths (see :func:`color_jitter`); 0 leaves the op out.
      contrast: as ``brightness``.
      saturation: as ``brightness``.
      hue: hue strength in [0, 0.5].
      jitter_prob: probability of applying the colour jitter.
      brightness_mode: ``'multiplicative'`` (torchvision) or ``'additive'`` (tf.image).
      grayscale_prob: probability of converting to grayscale.
      blur_prob: probability of a Gaussian blur.
      blur_sigma: ``(min, max)`` of the blur's standard deviation in pixels.
      solarize_prob: probability of solarising.
    """

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    jitter_prob: float = 0.0
    brightness_mode: str = "multiplicative"
    grayscale_prob: float = 0.0
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0


@dataclasses.dataclass(frozen=True)
class ViewRecipe:
    """A named list of view specs, output sizes and normalisation statistics.

    Attributes:
      name: the recipe's name (a key of ``RECIPES`` for the published ones).
      global_views: one ``ViewSpec`` per global view (2 for most methods, 1 for MAE).
      image_size: side of the global views in pixels.
      local_view: the spec of the multi-crop local views, or None.
      num_local_crops: default number of local views.
      local_size: side of the local views in pixels.
      mean: per-channel mean used to normalise the views.
      std: per-channel standard deviation used to normalise the views.
      reference: where the recipe comes from (paper and section).
    """

    name: str
    global_views: tuple[ViewSpec, ...]
    image_size: int
    local_view: ViewSpec | None = None
    num_local_crops: int = 0
    local_size: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    reference: str = ""


def _jitter(b: float, c: float, s: float, h: float, **kw) -> dict:
    return dict(brightness=b, contrast=c, saturation=s, hue=h, jitter_prob=0.8, **kw)


_SIMCLR = ViewSpec(**_jitter(0.8, 0.8, 0.8, 0.2), grayscale_prob=0.2, blur_prob=0.5)
_BYOL_1 = ViewSpec(**_jitter(0.4, 0.4, 0.2, 0.1), grayscale_prob=0.2, blur_prob=1.0)
_BYOL_2 = dataclasses.replace(_BYOL_1, blur_prob=0.1, solarize_prob=0.2)


def cifar_variant(recipe: ViewRecipe, name: str, **overrides) -> ViewRecipe:
    """The 32-px form of an ImageNet recipe: no blur, 16-px local crops, CIFAR-10 statistics.

    Args:
      recipe: the ImageNet recipe.
      name: the new recipe's name.
      **overrides: ``ViewRecipe`` fields to set on the result (e.g. other ``global_views``).

    Returns:
      A new ``ViewRecipe`` at 32 px.
    """
    globals_ = tuple(dataclasses.replace(v, blur_prob=0.0) for v in recipe.global_views)
    local = recipe.local_view and dataclasses.replace(recipe.local_view, blur_prob=0.0)
    fields = dict(
        name=name,
        global_views=globals_,
        local_view=local,
        image_size=32,
        local_size=16 if local else 0,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        reference=recipe.reference + "; CIFAR form: 32 px, no blur",
    )
    fields.update(overrides)
    return dataclasses.replace(recipe, **fields)


SIMCLR = ViewRecipe(
    "simclr", (_SIMCLR, _SIMCLR), 224, reference="Chen et al. 2020 (SimCLR), App. A"
)
MOCO_V2 = ViewRecipe(
    "moco_v2",
    (ViewSpec(scale=(0.2, 1.0), **_jitter(0.4, 0.4, 0.4, 0.1), grayscale_prob=0.2, blur_prob=0.5),)
    * 2,
    224,
    reference="Chen et al. 2020 (MoCo v2), aug_plus",
)
# BYOL's reference code shifts brightness additively (tf.image.random_brightness).
BYOL = ViewRecipe(
    "byol",
    (
        dataclasses.replace(_BYOL_1, brightness_mode="additive"),
        dataclasses.replace(_BYOL_2, brightness_mode="additive"),
    ),
    224,
    reference="Grill et al. 2020 (BYOL), Table 6",
)
BARLOW_TWINS = ViewRecipe(
    "barlow_twins", (_BYOL_1, _BYOL_2), 224, reference="Zbontar et al. 2021, App. (BYOL-like)"
)
VICREG = ViewRecipe("vicreg", (_BYOL_1, _BYOL_2), 224, reference="Bardes et al. 2022, App. C.1")
SWAV = ViewRecipe(
    "swav",
    (dataclasses.replace(_SIMCLR, scale=(0.14, 1.0)),) * 2,
    224,
    local_view=dataclasses.replace(_SIMCLR, scale=(0.05, 0.14)),
    num_local_crops=6,
    local_size=96,
    reference="Caron et al. 2020 (SwAV), multi-crop 2x224 + 6x96",
)
_DINO_G1 = dataclasses.replace(_BYOL_1, scale=(0.4, 1.0))
DINO = ViewRecipe(
    "dino",
    (_DINO_G1, dataclasses.replace(_DINO_G1, blur_prob=0.1, solarize_prob=0.2)),
    224,
    local_view=dataclasses.replace(_BYOL_1, scale=(0.05, 0.4), blur_prob=0.5),
    num_local_crops=8,
    local_size=96,
    reference="Caron et al. 2021 (DINO), 2x224 (0.4-1) + 8x96 (0.05-0.4)",
)
MAE = ViewRecipe(
    "mae", (ViewSpec(scale=(0.2, 1.0)),), 224, reference="He et al. 2022 (MAE), crop + flip"
)
# Kolesnikov et al.'s jigsaw and relative-patch-location runs turn the whole image gray with
# probability 0.66 before cutting patches (against matching patches by colour).
PATCH_TASKS = dataclasses.replace(
    MAE,
    name="patch_tasks",
    global_views=(ViewSpec(scale=(0.2, 1.0), grayscale_prob=0.66),),
    reference="crop + flip; grayscale p = 0.66 as Kolesnikov et al. 2019 (Revisiting SSL), "
    "jigsaw and relative patch location",
)

RECIPES: dict[str, ViewRecipe] = {
    "simclr": SIMCLR,
    "moco_v2": MOCO_V2,
    "byol": BYOL,
    "barlow_twins": BARLOW_TWINS,
    "vicreg": VICREG,
    "swav": SWAV,
    "dino": DINO,
    "mae": MAE,
    "patch_tasks": PATCH_TASKS,
    # SimCLR's CIFAR-10 experiments: colour strength 0.5, no blur (Chen et al. 2020, B.9).
    "simclr_cifar": cifar_variant(
        SIMCLR,
        "simclr_cifar",
        global_views=(ViewSpec(**_jitter(0.4, 0.4, 0.4, 0.1), grayscale_prob=0.2),) * 2,
    ),
    "moco_v2_cifar": cifar_variant(MOCO_V2, "moco_v2_cifar"),
    "byol_cifar": cifar_variant(BYOL, "byol_cifar"),
    "barlow_twins_cifar": cifar_variant(BARLOW_TWINS, "barlow_twins_cifar"),
    "vicreg_cifar": cifar_variant(VICREG, "vicreg_cifar"),
    "swav_cifar": cifar_variant(SWAV, "swav_cifar"),
    "dino_cifar": cifar_variant(DINO, "dino_cifar"),
    "mae_cifar": cifar_variant(MAE, "mae_cifar"),
    "patch_tasks_cifar": cifar_variant(PATCH_TASKS, "patch_tasks_cifar"),
}
"""The published view recipes by name (``augment.recipe`` in a config); ``*_cifar`` are
their 32-px forms (:func:`cifar_variant`: no blur, CIFAR-10 statistics)."""


def get_recipe(recipe: str | ViewRecipe) -> ViewRecipe:
    """Looks a name up in ``RECIPES`` (ValueError listing the names) or passes a recipe on.

    Args:
      recipe: a key of ``RECIPES`` or a ``ViewRecipe``.

    Returns:
      The ``ViewRecipe``.
    """
    if isinstance(recipe, ViewRecipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"unknown view recipe {recipe!r}; known: {', '.join(RECIPES)}")
    return RECIPES[recipe]


def view_sizes(
    recipe: str | ViewRecipe,
    *,
    image_size: int | None = None,
    num_local_crops: int | None = None,
    local_size: int | None = None,
) -> list[tuple[ViewSpec, int]]:
    """The ``(spec, output side)`` of every view, globals first, with overrides applied.

    Args:
      recipe: a name in ``RECIPES`` or a :class:`ViewRecipe`.
      image_size: global view side; default the recipe's.
      num_local_crops: number of local views; default the recipe's (0 = none).
      local_size: local view side; default the recipe's.

    Returns:
      One ``(ViewSpec, side)`` pair per view.
    """
    r = get_recipe(recipe)
    size = image_size or r.image_size
    n_local = r.num_local_crops if num_local_crops is None else num_local_crops
    if n_local < 0:
        raise ValueError(f"num_local_crops must be >= 0, got {n_local}")
    if n_local and r.local_view is None:
        raise ValueError(
            f"recipe {r.name!r} has no local (multi-crop) view; use swav/dino or set "
            f"num_local_crops=0 (got {n_local})"
        )
    small = local_size or r.local_size
    if n_local and not small:
        raise ValueError("multi-crop needs a local_size > 0")
    return [(v, size) for v in r.global_views] + [(r.local_view, small)] * n_local


def _as_float(images: jax.Array) -> jax.Array:
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [B, H, W, 3], got shape {images.shape}")
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def per_image_keys(key: jax.Array, images: jax.Array) -> jax.Array:
    """``jax.random.split(key, B)``, sharded like the batch axis of ``images``.

    With explicitly sharded meshes (the ``jax.make_mesh`` default) ``vmap`` needs every
    mapped input split the same way, so the replicated keys are resharded to match; on
    unsharded or auto-sharded inputs this is just the split.

    Args:
      key: PRNG key.
      images: ``[B, ...]`` array (possibly sharded on its leading axis).

    Returns:
      ``[B]`` keys.
    """
    keys = jax.random.split(key, images.shape[0])
    sharding = jax.typeof(images).sharding
    spec = getattr(sharding, "spec", None)
    if spec and spec[0] is not None:
        keys = jax.sharding.reshard(keys, NamedSharding(sharding.mesh, P(spec[0])))
    return keys


def _photometric(spec: ViewSpec, key: jax.Array, x: jax.Array) -> jax.Array:
    k_flip, k_jit, k_gray, k_blur, k_sol = jax.random.split(key, 5)
    x = geometric.random_flip(k_flip, x, prob=spec.flip_prob)
    x = color.random_color_jitter(
        k_jit,
        x,
        prob=spec.jitter_prob,
        brightness=spec.brightness,
        contrast=spec.contrast,
        saturation=spec.saturation,
        hue=spec.hue,
        brightness_mode=spec.brightness_mode,
    )
    x = color.random_grayscale(k_gray, x, prob=spec.grayscale_prob)
    x = blur.random_gaussian_blur(k_blur, x, prob=spec.blur_prob, sigma=spec.blur_sigma)
    return color.random_solarize(k_sol, x, prob=spec.solarize_prob)


def _views(spec: ViewSpec, size: int, view_keys: list[jax.Array], images: jax.Array):
    """Views that share a spec and size, traced once and vmapped over the view keys."""

    def one(k, x):
        k_crop, k_rest = jax.random.split(k)
        x = geometric.random_resized_crop(k_crop, x, size, scale=spec.scale, ratio=spec.ratio)
        return _photometric(spec, k_rest, x)

    if len(view_keys) == 1:
        return [jax.vmap(one)(per_image_keys(view_keys[0], images), images)]
    keys = jnp.stack([per_image_keys(k, images) for k in view_keys])  # [views, B]
    out = jax.vmap(lambda ks: jax.vmap(one)(ks, images))(keys)
    return [out[i] for i in range(len(view_keys))]


def make_views(
    recipe: str | ViewRecipe,
    rng: jax.Array,
    images: jax.Array | Sequence[jax.Array],
    *,
    image_size: int | None = None,
    num_local_crops: int | None = None,
    local_size: int | None = None,
    normalize: bool = True,
) -> list[jax.Array]:
    """Augmented, normalised views of a batch, one list entry per view.

    Args:
      recipe: a name in ``RECIPES`` (e.g. ``'simclr'``, ``'byol_cifar'``) or a recipe.
      rng: PRNG key; view ``v`` uses ``fold_in(rng, v)``, image ``i`` its ``i``-th split.
      images: uint8 (or float in [0, 1]) ``[B, H, W, 3]`` full images, on which the whole
        recipe runs; or a sequence with one ``[B, h, w, 3]`` batch per view already cropped
        on the host (``ssl_jax.data.host_crop``), on which only flip + photometric ops run.
      image_size: global view side (default: the recipe's).
      num_local_crops: multi-crop local views (default: the recipe's; 0 = none).
      local_size: local view side (default: the recipe's, e.g. 96 or 16 for CIFAR).
      normalize: subtract the recipe's mean and divide by its std.

    Returns:
      ``len(global_views) + num_local_crops`` float32 arrays ``[B, side, side, 3]``, global
      views first (2 for most recipes, 1 for MAE).
    """
    r = get_recipe(recipe)
    if not isinstance(images, jax.Array) and isinstance(images, (list, tuple)):
        return photometric_views(r, rng, images, normalize=normalize)
    x = _as_float(jnp.asarray(images))
    sizes = view_sizes(
        r, image_size=image_size, num_local_crops=num_local_crops, local_size=local_size
    )
    views = []
    # Consecutive views with one spec (SimCLR's pair, multi-crop locals) share one trace.
    for (spec, size), group in itertools.groupby(enumerate(sizes), key=lambda t: t[1]):
        keys = [jax.random.fold_in(rng, v) for v, _ in group]
        views += _views(spec, size, keys, x)
    return [color.normalize(v, r.mean, r.std) if normalize else v for v in views]


def photometric_views(
    recipe: str | ViewRecipe,
    rng: jax.Array,
    crops: Sequence[jax.Array],
    *,
    normalize: bool = True,
) -> list[jax.Array]:
    """Flip + photometric part of a recipe on views cropped on the host.

    Args:
      recipe: a name in ``RECIPES`` or a recipe.
      rng: PRNG key (view ``v`` uses ``fold_in(rng, v)``).
      crops: one uint8/float ``[B, h_v, w_v, 3]`` batch per view, global views first, then
        the local ones; at least as many as the recipe has global views.
      normalize: subtract the recipe's mean and divide by its std.

    Returns:
      float32 views, same order and shapes as ``crops``.
    """
    r = get_recipe(recipe)
    n_global = len(r.global_views)
    if len(crops) < n_global:
        raise ValueError(f"recipe {r.name!r} needs >= {n_global} crops, got {len(crops)}")
    if len(crops) > n_global and r.local_view is None:
        raise ValueError(f"recipe {r.name!r} has no local view but got {len(crops)} crops")
    views = []
    for v, crop in enumerate(crops):
        spec = r.global_views[v] if v < n_global else r.local_view
        x = _as_float(jnp.asarray(crop))
        out = jax.vmap(lambda k, img, s=spec: _photometric(s, k, img))(
            per_image_keys(jax.random.fold_in(rng, v), x), x
        )
        views.append(color.normalize(out, r.mean, r.std) if normalize else out)
    return views
