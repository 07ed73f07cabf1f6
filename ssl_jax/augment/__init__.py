"""Pure ``jnp`` image augmentations with explicit keys, and the published view recipes.

Ops take float32 images in [0, 1]; random ops take a key and one ``[H, W, C]`` image and
are batched with ``jax.vmap``. ``make_views(recipe, rng, images_uint8, image_size=...)``
turns a batch into the list of normalised views a method trains on.
"""

from ssl_jax.augment.blur import blur_radius, gaussian_blur, gaussian_kernel1d, random_gaussian_blur
from ssl_jax.augment.color import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    hsv_to_rgb,
    normalize,
    random_color_jitter,
    random_grayscale,
    random_solarize,
    rgb_to_grayscale,
    rgb_to_hsv,
    scale_brightness,
    solarize,
    to_grayscale,
)
from ssl_jax.augment.geometric import (
    crop_and_resize,
    flip_left_right,
    random_flip,
    random_resized_crop,
    resize,
    sample_crop_box,
)
from ssl_jax.augment.recipes import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RECIPES,
    ViewRecipe,
    ViewSpec,
    cifar_variant,
    get_recipe,
    make_views,
    per_image_keys,
    photometric_views,
    view_sizes,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RECIPES",
    "ViewRecipe",
    "ViewSpec",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "blur_radius",
    "cifar_variant",
    "color_jitter",
    "crop_and_resize",
    "flip_left_right",
    "gaussian_blur",
    "gaussian_kernel1d",
    "get_recipe",
    "hsv_to_rgb",
    "make_views",
    "normalize",
    "per_image_keys",
    "photometric_views",
    "random_color_jitter",
    "random_flip",
    "random_gaussian_blur",
    "random_grayscale",
    "random_resized_crop",
    "random_solarize",
    "resize",
    "rgb_to_grayscale",
    "rgb_to_hsv",
    "sample_crop_box",
    "scale_brightness",
    "solarize",
    "to_grayscale",
    "view_sizes",
]
