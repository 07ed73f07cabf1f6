"""Where the images come from: a TFDS builder plus a line saying which data it is.

``resolve_source`` maps the config's ``data.dataset`` string to a :class:`DataSource`:
``cifar10`` goes through :func:`resolve_cifar10` (prepared TFDS copy, else the shared JPEG
archive, else a TFDS download), ``folder:<path>`` prepares an image folder or archive once
(``ssl_jax.data.folder``), and any other name is a TFDS dataset (``cifar100``, ``stl10``
with its ``unlabelled`` split, ``imagenet2012`` from a manually downloaded tar).
"""

import dataclasses
import logging
import os
from pathlib import Path

import tensorflow_datasets as tfds

from ssl_jax.data import folder

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_CIFAR10_ARCHIVE = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.xz"
"""The shared CIFAR-10 JPEG archive, looked up relative to the repository root."""
FOLDER_PREFIX = "folder:"


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A prepared TFDS dataset and a human-readable account of where it came from.

    Attributes:
      builder: the prepared ``tfds.core.DatasetBuilder``.
      description: where the data came from, printed at the start of a run.
      skipped: unreadable images left out when the images were prepared (``skip_corrupt``).
    """

    builder: tfds.core.DatasetBuilder
    description: str
    skipped: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The TFDS dataset name."""
        return self.builder.info.name

    @property
    def num_classes(self) -> int:
        """Number of label classes."""
        return self.builder.info.features["label"].num_classes

    @property
    def class_names(self) -> list[str]:
        """Label names, in label order."""
        return list(self.builder.info.features["label"].names)

    @property
    def image_shape(self) -> tuple:
        """Stored image shape, ``(None, None, 3)`` when sizes vary."""
        return tuple(self.builder.info.features["image"].shape)

    @property
    def splits(self) -> list[str]:
        """Names of the prepared splits, sorted."""
        return sorted(self.builder.info.splits.keys())

    def num_examples(self, split: str) -> int:
        """Examples in ``split`` (any TFDS split expression)."""
        self.check_split(split)
        return int(self.builder.info.splits[split].num_examples)

    def check_split(self, split) -> None:
        """Raises ValueError naming the available splits if ``split`` uses a missing one.

        Args:
          split: a TFDS split expression (``'train[:10%]+test'``) or ``ReadInstruction``.
        """
        # A process's part (tfds.split_for_jax_process) wraps the expression in `.split`.
        expr = split if isinstance(split, str) else str(getattr(split, "split", ""))
        for part in (p.split("[")[0].strip() for p in expr.split("+")):
            if part and part not in self.builder.info.splits:
                raise ValueError(
                    f"dataset {self.name!r} has no split {part!r}; it has {self.splits}"
                )


def default_data_dir() -> Path:
    """``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets`` (the TFDS default).

    Returns:
      The directory as an absolute ``Path`` (``~`` expanded).
    """
    return Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()


def _data_dir(data_dir: str | os.PathLike | None) -> Path:
    if data_dir is None or str(data_dir) == "":
        return default_data_dir()
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"data dir {path} does not exist; create it, or leave data.data_dir empty to use "
            f"the default {default_data_dir()}"
        )
    return path


def _download(name: str, data_dir: Path) -> tfds.core.DatasetBuilder:
    builder = tfds.builder(name, data_dir=os.fspath(data_dir))
    try:
        builder.download_and_prepare()
    except Exception as e:  # TFDS raises many types (network, manual dir, checksums)
        raise ValueError(
            f"TFDS dataset {name!r} is not prepared in {data_dir} and preparing it failed "
            f"({type(e).__name__}: {e}). Prepare it where the data is reachable and point "
            "data.data_dir at that copy, or use an image folder (data.dataset='folder:PATH')"
        ) from e
    return builder


def resolve_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    archive: str | os.PathLike | None = None,
    download: bool = True,
    skip_corrupt: bool = False,
) -> DataSource:
    """CIFAR-10 from the first place that has it, and a log line saying which.

    Tried in order: a prepared TFDS ``cifar10`` in ``data_dir``; the JPEG archive (default
    ``../shared/data/cifar10-jpeg.tar.xz`` next to the repository), prepared once into
    ``data_dir`` as TFDS dataset ``cifar10_jpeg``; a TFDS download of ``cifar10``.

    Args:
      data_dir: TFDS data dir (None: :func:`default_data_dir`); must exist when given.
      archive: image-folder archive to use instead of the shared one.
      download: allow the last resort, a TFDS download.
      skip_corrupt: skip unreadable JPEGs of the archive (counted in ``skipped``).

    Returns:
      The :class:`DataSource`.
    """
    d = _data_dir(data_dir)
    builder = tfds.builder("cifar10", data_dir=os.fspath(d))
    if builder.is_prepared():
        desc = f"TFDS cifar10 {builder.info.version} prepared in {d}"
        log.info("CIFAR-10 source: %s", desc)
        return DataSource(builder, desc)
    archive = Path(archive) if archive else SHARED_CIFAR10_ARCHIVE
    if archive.exists():
        builder, meta = folder.prepare_image_folder(
            archive, data_dir=d, name="cifar10_jpeg", skip_corrupt=skip_corrupt
        )
        desc = (
            f"CIFAR-10 JPEG archive {archive} (re-encoded JPEGs: pixels differ slightly from "
            f"the original release), prepared as TFDS cifar10_jpeg in {d}"
        )
        log.info("CIFAR-10 source: %s", desc)
        return DataSource(builder, desc, tuple(meta["skipped"]))
    if not download:
        raise ValueError(
            f"CIFAR-10 not found: no prepared TFDS cifar10 in {d}, no archive at {archive}, "
            "and download=False"
        )
    log.info("CIFAR-10: no prepared copy in %s and no archive at %s; downloading", d, archive)
    builder = _download("cifar10", d)
    desc = f"TFDS cifar10 {builder.info.version} downloaded into {d}"
    log.info("CIFAR-10 source: %s", desc)
    return DataSource(builder, desc)


def resolve_source(
    dataset: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    skip_corrupt: bool = False,
    resize: int | None = None,
    variable_size: bool = False,
) -> DataSource:
    """The :class:`DataSource` for a config's ``data.dataset`` string.

    Args:
      dataset: ``'cifar10'``; ``'folder:<path>'`` (image folder or archive); or a TFDS name
        (``'cifar100'``, ``'stl10'``, ``'imagenet2012'``, ...).
      data_dir: TFDS data dir (None: :func:`default_data_dir`); must exist when given.
      download: let TFDS download/prepare a dataset that is not prepared yet.
      skip_corrupt: image folders: skip and count unreadable images.
      resize: image folders: store images N x N (see ``folder.prepare_image_folder``).
      variable_size: image folders: keep differing image sizes.

    Returns:
      The :class:`DataSource`; its ``description`` says which data was found.
    """
    if not dataset:
        raise ValueError("data.dataset is empty; give a TFDS name or 'folder:<path>'")
    if dataset == "cifar10":
        return resolve_cifar10(data_dir, download=download, skip_corrupt=skip_corrupt)
    d = _data_dir(data_dir)
    if dataset.startswith(FOLDER_PREFIX):
        path = Path(dataset[len(FOLDER_PREFIX) :]).expanduser()
        builder, meta = folder.prepare_image_folder(
            path, data_dir=d, resize=resize, variable_size=variable_size, skip_corrupt=skip_corrupt
        )
        skipped = f", {len(meta['skipped'])} unreadable image(s) skipped" if meta["skipped"] else ""
        desc = f"image folder {path} prepared as TFDS {builder.info.name} in {d}{skipped}"
        log.info("data source: %s", desc)
        return DataSource(builder, desc, tuple(meta["skipped"]))
    try:
        builder = tfds.builder(dataset, data_dir=os.fspath(d))
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(
            f"unknown dataset {dataset!r}: not a TFDS name nor prepared in {d}; use "
            "'cifar10', a TFDS name, or 'folder:<path>'"
        ) from e
    if builder.is_prepared():
        desc = f"TFDS {dataset} {builder.info.version} prepared in {d}"
    elif download:
        builder = _download(dataset, d)
        desc = f"TFDS {dataset} {builder.info.version} downloaded into {d}"
    else:
        raise ValueError(f"TFDS dataset {dataset!r} is not prepared in {d} and download=False")
    log.info("data source: %s", desc)
    return DataSource(builder, desc)
