"""Baselines of the CIFAR-10 benchmark that need no training: a randomly initialised encoder
and kNN / a linear probe on raw pixels.

Raw pixels: the issue's figure (45.5% top-1, k = 200, T = 0.07) is kNN on mean-centred,
L2-normalised pixels with the FULL 50k bank, centred PER IMAGE (each image minus the mean of
all its pixels and channels, i.e. cosine similarity of centred pixels = Pearson correlation).
Scaling ([0, 1] or [0, 255]) cancels in the L2 normalisation; centring with the
training set's mean image instead gives ~42.5-42.7%, and other choices are in
:data:`PIXEL_PROTOCOLS`. The JPEG decoder shifts the result by a few hundredths: the
training pipeline's TensorFlow decoder and PIL's give slightly different pixels, so both are
measured when the shared archive is at hand.
"""

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ssl_jax import augment, data, metrics
from ssl_jax.eval import knn_accuracy, knn_neighbours, linear_probe
from ssl_jax.train.step import data_mesh

MAIN_PROTOCOL = "per_image_mean"
_MONITOR_EXAMPLES = 2048  # as ssl_jax.evaluate

PixelFn = Callable[[np.ndarray, dict[str, np.ndarray]], np.ndarray]

# name -> (description, fn(x float32 [N, H, W, C] in [0, 1], training-set stats) -> features)
PIXEL_PROTOCOLS: dict[str, tuple[str, PixelFn]] = {
    "per_image_mean": (
        "each image minus the mean of all its pixels and channels (the issue's protocol)",
        lambda x, s: x - x.mean(axis=(1, 2, 3), keepdims=True),
    ),
    "per_image_channel_mean": (
        "each image minus its own per-channel means",
        lambda x, s: x - x.mean(axis=(1, 2), keepdims=True),
    ),
    "dataset_mean_image": (
        "minus the training set's mean image (per pixel and channel)",
        lambda x, s: x - s["mean_image"],
    ),
    "dataset_channel_mean": (
        "minus the training set's per-channel means",
        lambda x, s: x - s["mean_channel"],
    ),
    "dataset_channel_standardise": (
        "(x - CIFAR-10 channel mean) / channel std, the encoders' input normalisation",
        lambda x, s: (x - np.float32(augment.CIFAR10_MEAN)) / np.float32(augment.CIFAR10_STD),
    ),
    "uncentred": ("pixels in [0, 1], not centred", lambda x, s: x),
    "uint8_minus_unit_means": (
        "[0, 255] pixels minus the [0, 1]-scale channel means (a unit slip: ~no centring)",
        lambda x, s: 255.0 * x - np.float32(augment.CIFAR10_MEAN),
    ),
}


def load_split(source: data.DataSource, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All images (uint8 ``[N, H, W, 3]``) and labels of ``split`` through the pipeline's
    decoder, in dataset order."""
    images, labels = [], []
    for b in data.eval_batches(source, split=split, batch_size=1000, image_size=32):
        images.append(b["image"][b["mask"]])
        labels.append(b["label"][b["mask"]])
    return np.concatenate(images), np.concatenate(labels).astype(np.int32)


def _image_files(root: Path):
    """``(relative path, bytes)`` of every JPEG of an image folder or a tar archive of one."""
    if root.is_dir():
        for path in sorted(root.rglob("*.jpg")):
            yield path.relative_to(root).parts, path.read_bytes()
        return
    with tarfile.open(root) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                yield Path(member.name).parts, tar.extractfile(member).read()


def pil_decoded(root: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (images, labels)}`` of an image folder (``split/class/*.jpg``) or a tar
    archive of one, decoded with PIL.

    Labels are the sorted class folder names, as ``ssl_jax.data.folder`` assigns them.
    """
    found: dict[str, list[tuple[str, str, np.ndarray]]] = {}
    for parts, raw in _image_files(Path(root)):
        if len(parts) < 3:
            continue
        split, cls, name = parts[-3:]
        with Image.open(io.BytesIO(raw)) as im:
            found.setdefault(split, []).append((cls, name, np.asarray(im.convert("RGB"))))
    classes = sorted({c for items in found.values() for c, _, _ in items})
    out = {}
    for split, items in found.items():
        items.sort(key=lambda t: (t[0], t[1]))
        labels = np.array([classes.index(c) for c, _, _ in items], np.int32)
        out[split] = (np.stack([im for _, _, im in items]), labels)
    return out


def pixel_stats(train_images: np.ndarray) -> dict[str, np.ndarray]:
    x = train_images.astype(np.float32) / 255.0
    return {"mean_image": x.mean(axis=0), "mean_channel": x.mean(axis=(0, 1, 2))}


def pixel_features(images: np.ndarray, protocol: str, stats: dict[str, np.ndarray]) -> np.ndarray:
    """``[N, H*W*C]`` float32 raw-pixel features of uint8 (or [0, 1] float) images."""
    if protocol not in PIXEL_PROTOCOLS:
        raise ValueError(f"unknown pixel protocol {protocol!r}; known: {sorted(PIXEL_PROTOCOLS)}")
    x = np.asarray(images, np.float32)
    if np.asarray(images).dtype == np.uint8:
        x = x / 255.0
    feats = PIXEL_PROTOCOLS[protocol][1](x, stats)
    return np.asarray(feats, np.float32).reshape(len(x), -1)


def _pixel_monitors(test_images: np.ndarray, stats, recipe: str, seed: int) -> dict[str, float]:
    """The encoders' collapse monitors with the pixel map as the encoder: two views of the
    first test images (the recipe's crops and colour ops, not normalised)."""
    images = jnp.asarray(test_images[:_MONITOR_EXAMPLES])
    views = jax.jit(lambda k, x: augment.make_views(recipe, k, x, normalize=False))(
        jax.random.key(seed), images
    )
    z1, z2 = (jnp.asarray(pixel_features(np.asarray(v), MAIN_PROTOCOL, stats)) for v in views[:2])
    return {
        "std": float(metrics.embedding_std(z1)),
        "eff_rank": float(metrics.effective_rank(z1)),
        "alignment": float(metrics.alignment(z1, z2)),
        "uniformity": float(metrics.uniformity(z1)),
    }


def raw_pixel_eval(
    source: data.DataSource,
    *,
    k: int,
    temperature: float,
    linear_epochs: int,
    linear_lr: float,
    recipe: str,
    seed: int = 0,
    max_train_examples: int | None = None,
    archive: str | Path | None = None,
    plots_dir: str | Path | None = None,
) -> dict:
    """kNN under every :data:`PIXEL_PROTOCOLS` entry, and for the main one a linear probe,
    the collapse monitors and figures.

    Args:
      source: the data (its ``train`` bank and ``test`` queries).
      k, temperature: kNN neighbours and vote temperature.
      linear_epochs, linear_lr: linear probe on the main protocol's features.
      recipe: view recipe for the alignment monitor.
      seed: probe and monitor seed.
      max_train_examples: bank size cap (None: the whole split).
      archive: the image folder (or archive of one) ``source`` was prepared from, if any:
        kNN is repeated on its PIL-decoded pixels (main protocol and dataset mean image).
      plots_dir: write ``tsne.png`` and ``neighbours.png`` there.

    Returns:
      ``{'knn_top1', 'knn_top5', 'linear_top1', 'linear_top5', 'std', 'eff_rank',
      'alignment', 'uniformity', 'protocols': {name: {'description', 'knn_top1'}},
      'pil': {name: knn_top1} (with an archive), 'num_train', 'num_test'}``.
    """
    train_x, train_y = load_split(source, "train")
    test_x, test_y = load_split(source, "test")
    if max_train_examples:
        train_x, train_y = train_x[:max_train_examples], train_y[:max_train_examples]
    mesh = data_mesh()
    k = min(k, len(train_x))
    knn = lambda a, b, c, d: knn_accuracy(
        a, b, c, d, num_classes=source.num_classes, k=k, temperature=temperature, mesh=mesh
    )
    stats = pixel_stats(train_x)
    protocols, main = {}, None
    for name, (description, _) in PIXEL_PROTOCOLS.items():
        bank = pixel_features(train_x, name, stats)
        queries = pixel_features(test_x, name, stats)
        acc = knn(bank, train_y, queries, test_y)
        protocols[name] = {"description": description, "knn_top1": acc["top1"]}
        if name == MAIN_PROTOCOL:
            main = (bank, queries, acc)
    bank, queries, acc = main
    lin = linear_probe(
        bank,
        train_y,
        queries,
        test_y,
        num_classes=source.num_classes,
        epochs=linear_epochs,
        lr=linear_lr,
        seed=seed,
    )
    result = {
        "knn_top1": acc["top1"],
        "knn_top5": acc["top5"],
        "linear_top1": lin["top1"],
        "linear_top5": lin["top5"],
        **_pixel_monitors(test_x, stats, recipe, seed),
        "protocols": protocols,
        "num_train": len(train_x),
        "num_test": len(test_x),
    }
    if archive is not None and Path(archive).exists():
        pil = pil_decoded(archive)
        (ptr_x, ptr_y), (pte_x, pte_y) = pil["train"], pil["test"]
        if max_train_examples:
            ptr_x, ptr_y = ptr_x[:max_train_examples], ptr_y[:max_train_examples]
        pstats = pixel_stats(ptr_x)
        result["pil"] = {
            name: knn(
                pixel_features(ptr_x, name, pstats),
                ptr_y,
                pixel_features(pte_x, name, pstats),
                pte_y,
            )["top1"]
            for name in (MAIN_PROTOCOL, "dataset_mean_image")
        }
    if plots_dir is not None:
        _pixel_plots(Path(plots_dir), bank, queries, test_x, test_y, train_x, train_y, source)
    return result


def _pixel_plots(out, bank, queries, test_x, test_y, train_x, train_y, source) -> None:
    from ssl_jax.eval import plots

    out.mkdir(parents=True, exist_ok=True)
    names = source.class_names
    plots.plot_embedding_map(queries, test_y, out / "tsne.png", class_names=names, max_points=2000)
    q = np.arange(0, len(queries), max(1, len(queries) // 8))[:8]
    sims, idx = knn_neighbours(bank, queries[q], k=8)
    plots.plot_nearest_neighbours(
        test_x[q],
        train_x[idx],
        out / "neighbours.png",
        query_labels=test_y[q],
        neighbour_labels=train_y[idx],
        similarities=sims,
        class_names=names,
    )
