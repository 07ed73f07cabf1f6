"""A picture of every view recipe: a few CIFAR-10 images and the views each preset makes.

    python experiments/make_view_grid.py [--archive PATH] [--out PATH]

Reads the images straight from the shared archive (``../shared/data/cifar10-jpeg.tar.xz``),
runs ``ssl_jax.augment.make_views`` (unnormalised, so colours are visible) and writes
``experiments/results/views_grid.png``. CIFAR presets run at 32 px (16-px local crops);
ImageNet presets run on the images upsampled to 96 px (global views 96 px, local 40 px) so
that blur and solarisation are visible. Multi-crop presets show 4 of their local crops.
"""

import argparse
import io
import os
import tarfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from ssl_jax import augment
from ssl_jax.data.source import SHARED_CIFAR10_ARCHIVE

OUT = Path(__file__).resolve().parent / "results" / "views_grid.png"
MEMBERS = ("train/automobile/0004.jpg", "train/horse/0007.jpg")
SHOWN_LOCAL = 4


def read_images(archive: Path, members=MEMBERS) -> np.ndarray:
    """The named JPEGs of the archive as uint8 ``[N, 32, 32, 3]`` (one pass over the tar)."""
    wanted, found = set(members), {}
    with tarfile.open(archive) as tar:
        for info in tar:
            if info.name in wanted:
                found[info.name] = np.asarray(Image.open(io.BytesIO(tar.extractfile(info).read())))
                if len(found) == len(wanted):
                    break
    missing = wanted - set(found)
    if missing:
        raise ValueError(f"{archive} lacks {sorted(missing)}")
    return np.stack([found[m] for m in members])


def views_for(name: str, images: np.ndarray, key: jax.Array) -> list[np.ndarray]:
    recipe = augment.RECIPES[name]
    n_local = min(recipe.num_local_crops, SHOWN_LOCAL)
    if name.endswith("_cifar"):
        return augment.make_views(name, key, images, num_local_crops=n_local, normalize=False)
    big = np.asarray(jax.image.resize(images / 255.0, (len(images), 96, 96, 3), "bilinear"))
    big = np.clip(big, 0, 1)
    return augment.make_views(
        name, key, big, image_size=96, num_local_crops=n_local, local_size=40, normalize=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR10_ARCHIVE)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images = read_images(args.archive)
    names = list(augment.RECIPES)
    per_image = 1 + 2 + SHOWN_LOCAL  # original, two global views, local crops
    cols = per_image * len(images)
    fig, axes = plt.subplots(
        len(names), cols, figsize=(cols * 0.95, len(names) * 1.0), squeeze=False
    )
    for p, name in enumerate(names):
        views = [np.asarray(v) for v in views_for(name, images, jax.random.key(args.seed + p))]
        for i, image in enumerate(images):
            cells = axes[p, i * per_image : (i + 1) * per_image]
            cells[0].imshow(image, interpolation="nearest")
            for c, view in enumerate(views[: per_image - 1]):
                cells[c + 1].imshow(np.clip(view[i], 0, 1), interpolation="nearest")
        axes[p, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        for ax in axes[p]:
            ax.set_xticks([])
            ax.set_yticks([])
            if not ax.images:
                ax.axis("off")
    titles = ["image", "view 1", "view 2"] + [f"local {k + 1}" for k in range(SHOWN_LOCAL)]
    for ax, title in zip(axes[0], titles * len(images), strict=True):
        ax.set_title(title, fontsize=8)
    fig.suptitle("ssl_jax view recipes on CIFAR-10 (unnormalised)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.995))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=72)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
