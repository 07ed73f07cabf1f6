"""Photometric image ops: pure ``jnp`` functions of float32 images in [0, 1].

Deterministic ops (``adjust_*``, ``to_grayscale``, ``solarize``, ``normalize``) take the
strength as an argument and work on any leading batch dims (``[..., H, W, 3]``); their
semantics follow ``tf.image`` (saturation and hue go through HSV, contrast uses the
per-channel mean), as the SimCLR and BYOL reference code does. Random ops take an explicit
key and one image ``[H, W, 3]``; batch them with ``jax.vmap`` over keys and images.

References: Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations" (SimCLR), Appendix A; Grill et al. 2020, "Bootstrap Your Own Latent"
(BYOL), Table 6.
"""

import functools

import jax
import jax.numpy as jnp

# ITU-R 601-2 luma weights, the ones tf.image.rgb_to_grayscale uses.
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def _check_rgb(image: jax.Array, name: str = "image") -> None:
    if image.ndim < 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must be [..., H, W, 3] RGB, got shape {image.shape}")


def rgb_to_grayscale(image: jax.Array) -> jax.Array:
    """Luma of an RGB image.

    Args:
      image: float ``[..., H, W, 3]``.

    Returns:
      ``[..., H, W, 1]``, the weighted channel sum with ITU-R 601-2 weights.
    """
    _check_rgb(image)
    return jnp.sum(image * jnp.asarray(GRAY_WEIGHTS, image.dtype), axis=-1, keepdims=True)


def to_grayscale(image: jax.Array) -> jax.Array:
    """Grayscale replicated to three channels (shape preserved), as torchvision does."""
    return jnp.broadcast_to(rgb_to_grayscale(image), image.shape)


def adjust_brightness(image: jax.Array, delta: jax.Array | float) -> jax.Array:
    """Additive brightness: ``image + delta`` (``tf.image.adjust_brightness``; SimCLR v1, BYOL).

    Args:
      image: float ``[..., H, W, 3]`` in [0, 1].
      delta: scalar shift.

    Returns:
      The shifted image clipped to [0, 1].
    """
    return jnp.clip(image + delta, 0.0, 1.0)


def scale_brightness(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """Multiplicative brightness: ``image * factor`` (torchvision, SimCLR v2), clipped to [0, 1]."""
    return jnp.clip(image * factor, 0.0, 1.0)


def adjust_contrast(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """Contrast about the per-channel spatial mean (``tf.image.adjust_contrast``), clipped.

    Args:
      image: float ``[..., H, W, 3]`` in [0, 1].
      factor: scalar; 1 is the identity, 0 gives the flat mean image.

    Returns:
      ``(image - mean) * factor + mean`` clipped to [0, 1].
    """
    _check_rgb(image)
    mean = jnp.mean(image, axis=(-3, -2), keepdims=True)
    return jnp.clip((image - mean) * factor + mean, 0.0, 1.0)


def rgb_to_hsv(image: jax.Array) -> jax.Array:
    """RGB in [0, 1] to HSV with hue in [0, 1) (the convention of ``tf.image.rgb_to_hsv``)."""
    _check_rgb(image)
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    value = jnp.max(image, axis=-1)
    chroma = value - jnp.min(image, axis=-1)
    safe_value = jnp.where(value > 0, value, 1.0)
    saturation = jnp.where(value > 0, chroma / safe_value, 0.0)
    safe_chroma = jnp.where(chroma > 0, chroma, 1.0)
    # The sextant from the index of the first largest channel (r, then g, then b on ties, as
    # tf.image's value == r, value == g), not from comparing the max with the channels: XLA
    # may compute a channel twice in different fusions, and a 1-ulp difference between the
    # two copies would take a pixel to another sextant.
    top = jnp.argmax(image, axis=-1)
    hue = jnp.where(
        top == 0,
        (g - b) / safe_chroma,
        jnp.where(top == 1, 2.0 + (b - r) / safe_chroma, 4.0 + (r - g) / safe_chroma),
    )
    hue = jnp.where(chroma > 0, hue / 6.0, 0.0)
    hue = jnp.where(hue < 0, hue + 1.0, hue)
    return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(image: jax.Array) -> jax.Array:
    """HSV (hue in [0, 1)) back to RGB; the inverse of :func:`rgb_to_hsv`."""
    h, s, v = image[..., 0], image[..., 1], image[..., 2]
    # The standard piecewise-linear form: channel n uses k = (n + 6h) mod 6.
    n = jnp.asarray([5.0, 3.0, 1.0], image.dtype)
    k = jnp.mod(n + 6.0 * h[..., None], 6.0)
    weight = jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)
    return v[..., None] - (v * s)[..., None] * weight


def adjust_saturation(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """Scales HSV saturation by ``factor`` (clipped to [0, 1]), as ``tf.image.adjust_saturation``.

    Args:
      image: float ``[..., H, W, 3]`` in [0, 1].
      factor: scalar >= 0; 1 is the identity, 0 gives grayscale (HSV value).

    Returns:
      The RGB image.
    """
    hsv = rgb_to_hsv(image)
    s = jnp.clip(hsv[..., 1] * factor, 0.0, 1.0)
    return jnp.clip(hsv_to_rgb(hsv.at[..., 1].set(s)), 0.0, 1.0)


def adjust_hue(image: jax.Array, delta: jax.Array | float) -> jax.Array:
    """Rotates the hue by ``delta`` turns (``tf.image.adjust_hue``; delta in [-1, 1]).

    Args:
      image: float ``[..., H, W, 3]`` in [0, 1].
      delta: scalar, fraction of the hue circle; torchvision's ``hue`` uses the same unit.

    Returns:
      The RGB image.
    """
    hsv = rgb_to_hsv(image)
    h = jnp.mod(hsv[..., 0] + delta, 1.0)
    return jnp.clip(hsv_to_rgb(hsv.at[..., 0].set(h)), 0.0, 1.0)


def solarize(image: jax.Array, threshold: float = 0.5) -> jax.Array:
    """Inverts pixels at or above ``threshold``: ``x if x < t else 1 - x`` (BYOL, torchvision)."""
    return jnp.where(image < threshold, image, 1.0 - image)


def normalize(
    image: jax.Array, mean: tuple[float, ...] | jax.Array, std: tuple[float, ...] | jax.Array
) -> jax.Array:
    """Per-channel standardisation ``(image - mean) / std``.

    Args:
      image: float ``[..., C]``.
      mean: ``C`` channel means.
      std: ``C`` channel standard deviations, all > 0.

    Returns:
      The normalised image, same shape.
    """
    mean = jnp.asarray(mean, image.dtype)
    std = jnp.asarray(std, image.dtype)
    if mean.shape != (image.shape[-1],) or std.shape != (image.shape[-1],):
        raise ValueError(
            f"mean/std need {image.shape[-1]} entries, got {mean.shape} and {std.shape}"
        )
    if not isinstance(std, jax.core.Tracer) and bool(jnp.any(std <= 0)):
        raise ValueError(f"std must be > 0, got {std}")
    return (image - mean) / std


def _apply_with_prob(key: jax.Array, prob: float, fn, image: jax.Array) -> jax.Array:
    """``fn(image)`` with probability ``prob``; static 0 / 1 avoid computing both branches."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {prob}")
    if prob == 0.0:
        return image
    if prob == 1.0:
        return fn(image)
    return jnp.where(jax.random.uniform(key) < prob, fn(image), image)


def color_jitter(
    key: jax.Array,
    image: jax.Array,
    *,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    hue: float = 0.0,
    brightness_mode: str = "multiplicative",
) -> jax.Array:
    """Brightness, contrast, saturation and hue jitter in a random order (torchvision/SimCLR).

    Factors are uniform in ``[max(0, 1 - s), 1 + s]`` (hue: shift uniform in ``[-hue, hue]``;
    additive brightness: shift uniform in ``[-brightness, brightness]``). A zero strength
    leaves that op out, so all-zero strengths return the image unchanged.

    Args:
      key: PRNG key.
      image: float ``[H, W, 3]`` in [0, 1] (one image; vmap for a batch).
      brightness: strength (>= 0).
      contrast: strength (>= 0).
      saturation: strength (>= 0).
      hue: strength in [0, 0.5].
      brightness_mode: ``'multiplicative'`` (torchvision, SimCLR v2) or ``'additive'``
        (``tf.image.random_brightness``; SimCLR v1, BYOL).

    Returns:
      The jittered image in [0, 1].

    References: Chen et al. 2020 (SimCLR), Appendix A, ``color_jitter`` with random order.
    """
    _check_rgb(image)
    for name, value in (("brightness", brightness), ("contrast", contrast)):
        if value < 0:
            raise ValueError(f"{name} strength must be >= 0, got {value}")
    if saturation < 0:
        raise ValueError(f"saturation strength must be >= 0, got {saturation}")
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"hue strength must be in [0, 0.5], got {hue}")
    if brightness_mode not in ("multiplicative", "additive"):
        raise ValueError(
            f"brightness_mode must be 'multiplicative' or 'additive', got {brightness_mode!r}"
        )
    k_order, k_b, k_c, k_s, k_h = jax.random.split(key, 5)

    def factor(k, s):
        return jax.random.uniform(k, minval=max(0.0, 1.0 - s), maxval=1.0 + s)

    one, zero = jnp.ones((), image.dtype), jnp.zeros((), image.dtype)
    # Each enabled op as the parameters of one of two forms (see _linear_form, _hsv_form):
    # (is_hsv, linear (about_mean, factor, shift), hsv (is_hue, hue shift, saturation factor)).
    ops = []
    if brightness > 0:
        if brightness_mode == "additive":
            d = jax.random.uniform(k_b, minval=-brightness, maxval=brightness)
            ops.append((False, (False, one, d), (False, zero, one)))
        else:
            ops.append((False, (False, factor(k_b, brightness), zero), (False, zero, one)))
    if contrast > 0:
        ops.append((False, (True, factor(k_c, contrast), zero), (False, zero, one)))
    if saturation > 0:
        ops.append((True, (False, one, zero), (False, zero, factor(k_s, saturation))))
    if hue > 0:
        d_h = jax.random.uniform(k_h, minval=-hue, maxval=hue)
        ops.append((True, (False, one, zero), (True, d_h, one)))
    if not ops:
        return image
    order = jax.random.permutation(k_order, len(ops))
    # Per image the slot is a switch over the ops, and under vmap a switch evaluates every
    # branch. Evaluating one form of each kind with the drawn op's parameters gives the same
    # numbers bit for bit at 2 evaluations per slot instead of one per op.
    # select_n, not indexing into stacked parameters: an index into a table does not trace
    # on explicitly sharded meshes (the batch sharding gives the gather no output sharding).
    has_linear, has_hsv = (any(not op[0] for op in ops), any(op[0] for op in ops))
    ops = [jax.tree.map(jnp.asarray, op) for op in ops]
    for slot in range(len(ops)):
        pick = functools.partial(jax.lax.select_n, order[slot])
        is_hsv, linear, hsv = jax.tree.map(pick, *ops)
        if not has_hsv:
            image = _linear_form(image, *linear)
        elif not has_linear:
            image = _hsv_form(image, *hsv)
        else:
            image = jnp.where(is_hsv, _hsv_form(image, *hsv), _linear_form(image, *linear))
    return image


def _linear_form(image, about_mean, factor, shift):
    """``clip((x - m) * factor + m + shift)``, ``m`` the per-channel mean where ``about_mean``
    (contrast) and 0 elsewhere (brightness): each op's own arithmetic, exactly."""
    mean = jnp.mean(image, axis=(-3, -2), keepdims=True)
    m = jnp.where(about_mean, mean, jnp.zeros_like(mean))
    return jnp.clip((image - m) * factor + m + shift, 0.0, 1.0)


def _hsv_form(image, is_hue, hue_shift, saturation_factor):
    """:func:`adjust_hue` where ``is_hue``, else :func:`adjust_saturation`, through one HSV
    round trip."""
    hsv = rgb_to_hsv(image)
    h = jnp.where(is_hue, jnp.mod(hsv[..., 0] + hue_shift, 1.0), hsv[..., 0])
    s = jnp.where(is_hue, hsv[..., 1], jnp.clip(hsv[..., 1] * saturation_factor, 0.0, 1.0))
    return jnp.clip(hsv_to_rgb(jnp.stack([h, s, hsv[..., 2]], axis=-1)), 0.0, 1.0)


def random_color_jitter(key: jax.Array, image: jax.Array, *, prob: float, **strengths) -> jax.Array:
    """:func:`color_jitter` applied with probability ``prob`` (0.8 in SimCLR/BYOL/DINO)."""
    k_apply, k_jitter = jax.random.split(key)
    return _apply_with_prob(k_apply, prob, lambda x: color_jitter(k_jitter, x, **strengths), image)


def random_grayscale(key: jax.Array, image: jax.Array, *, prob: float) -> jax.Array:
    """:func:`to_grayscale` with probability ``prob`` (0.2 in the recipes)."""
    return _apply_with_prob(key, prob, to_grayscale, image)


def random_solarize(
    key: jax.Array, image: jax.Array, *, prob: float, threshold: float = 0.5
) -> jax.Array:
    """:func:`solarize` with probability ``prob`` (BYOL second view: 0.2)."""
    return _apply_with_prob(key, prob, lambda x: solarize(x, threshold), image)
