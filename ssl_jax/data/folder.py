"""A local image folder (or a .tar/.tar.gz/.tar.xz of one) prepared ONCE as a TFDS dataset.

Layout: ``root/<split>/<class>/<image>`` (jpg, jpeg, png, bmp, gif, webp; an archive may
wrap it in one top folder). Labels are the sorted class names over all splits. Every
image is decoded in parallel to check it: unreadable files raise an error naming them, or
are skipped and counted with ``skip_corrupt=True``; grayscale/palette/RGBA images are
converted to RGB; images of differing sizes raise an error unless ``resize`` (shorter side
to N, centre crop N x N) or ``variable_size=True``. Valid RGB JPEGs are stored byte for byte,
the others as lossless PNG. The result is an ordinary TFDS dataset in ``data_dir/<name>``,
so ``tfds.builder(name, data_dir=data_dir)`` loads it and later calls reuse it.

References: TFDS ``ImageFolder`` (``tfds.folder_dataset``), whose layout this follows.
"""

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import ClassVar

import tensorflow_datasets as tfds
from PIL import Image

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2")
META_FILE = "ssl_jax_folder.json"
VERSION = _VERSION = "1.0.0"


@dataclasses.dataclass(frozen=True)
class FolderListing:
    """Image files of a folder: ``files[split]`` = sorted ``(relative path, class)`` pairs."""

    root: Path
    classes: tuple[str, ...]
    files: dict[str, list[tuple[str, str]]]


class _Unreadable(Exception):
    pass


def is_archive(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def dataset_name(source: str | os.PathLike) -> str:
    """A TFDS-safe snake_case name from a folder or archive name (``cifar10-jpeg.tar.xz``
    -> ``cifar10_jpeg``)."""
    base = Path(source).name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    name = re.sub(r"[^0-9a-z]+", "_", base.lower()).strip("_")
    return name if name and name[0].isalpha() else f"folder_{name}"


def list_image_folder(root: str | os.PathLike) -> FolderListing:
    """Lists ``root/<split>/<class>/<image>`` (or ``root/<top>/<split>/...``) and checks it.

    Args:
      root: an extracted folder.

    Returns:
      The :class:`FolderListing`.

    Raises:
      ValueError: missing or empty folder, a split or class folder without images, or
        another layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist (or is not a directory)")
    found: list[tuple[str, ...]] = []
    for dirpath, _, names in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        found += [(*rel, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    if not found:
        raise ValueError(
            f"image folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
            "expected root/<split>/<class>/<image>"
        )
    depths = {len(p) for p in found}
    if depths == {4} and len({p[0] for p in found}) == 1:  # one wrapping top folder
        return list_image_folder(root / found[0][0])
    if depths != {3}:
        bad = next(p for p in found if len(p) != 3)
        raise ValueError(
            f"image folder {root} must be laid out root/<split>/<class>/<image>; found "
            f"{'/'.join(bad)}"
        )
    files: dict[str, list[tuple[str, str]]] = {}
    for split in sorted(d.name for d in root.iterdir() if d.is_dir()):
        entries = sorted((f"{s}/{c}/{n}", c) for s, c, n in found if s == split)
        if not entries:
            raise ValueError(f"split folder {root / split} is empty: no images in its classes")
        # An empty class folder (a failed copy?) would silently renumber the other labels.
        seen = {c for _, c in entries}
        for d in sorted((root / split).iterdir()):
            if d.is_dir() and not d.name.startswith(".") and d.name not in seen:
                raise ValueError(
                    f"class folder {d} holds no images ({', '.join(IMAGE_EXTENSIONS)}); add its "
                    "images or remove the folder"
                )
        files[split] = entries
    classes = tuple(sorted({c for entries in files.values() for _, c in entries}))
    return FolderListing(root=root, classes=classes, files=files)


def _center_square(im: Image.Image, side: int) -> Image.Image:
    w, h = im.size
    scale = side / min(w, h)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
    left, top = (nw - side) // 2, (nh - side) // 2
    return im.crop((left, top, left + side, top + side))


def _load_image(path: Path, resize: int | None) -> tuple[bytes, tuple[int, int]]:
    """Decodes one file fully; returns the bytes to store and the stored (height, width)."""
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            fmt, mode = im.format, im.mode
            out = im if mode == "RGB" else im.convert("RGB")
            if resize is not None:
                out = _center_square(out, resize)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise _Unreadable(f"{type(e).__name__}: {e}") from None
    if fmt == "JPEG" and mode == "RGB" and resize is None:
        return data, (out.size[1], out.size[0])  # store the original bytes: no re-encoding
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue(), (out.size[1], out.size[0])


def _make_builder_class(name: str):
    """A GeneratorBasedBuilder subclass named ``name`` (not registered globally)."""

    class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(_VERSION)
        RELEASE_NOTES: ClassVar[dict[str, str]] = {_VERSION: "Prepared by ssl_jax."}
        # No checksums file to find next to this code; TFDS's lookup would also need the
        # optional ``importlib_resources`` package.
        code_path = None

        def __init__(self, *, listing: FolderListing, shape, options: dict, **kwargs):
            self._listing, self._options = listing, options
            self._shape, self._shape_of = shape  # (H, W, 3) and the file it was read from
            self.skipped: list[str] = []
            super().__init__(**kwargs)

        def _info(self):
            return self.dataset_info_from_configs(
                description=f"Image folder {self._options['source']} prepared by ssl_jax.",
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=self._shape),
                        "label": tfds.features.ClassLabel(names=self._listing.classes),
                        "file_name": tfds.features.Text(),
                    }
                ),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {s: self._generate_examples(s) for s in self._listing.files}

        def _generate_examples(self, split):
            yield from _decode_split(self, split)

    _Builder.name = name
    _Builder.__name__ = _Builder.__qualname__ = "".join(p.title() for p in name.split("_"))
    return _Builder


def _decode_split(builder, split: str):
    """Yields ``(key, example)`` for a split, decoding with a bounded thread pool."""
    listing, opts = builder._listing, builder._options
    entries = listing.files[split]
    workers = opts["num_workers"]
    label = {c: i for i, c in enumerate(listing.classes)}
    fixed_hw = builder._shape[:2] if builder._shape[0] is not None else None
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        window = 8 * workers
        futures = [
            pool.submit(_safe_load, listing.root / p, opts["resize"]) for p, _ in entries[:window]
        ]
        for i, (rel, cls) in enumerate(entries):
            result = futures[i].result()
            futures[i] = None  # free the bytes
            if i + window < len(entries):
                futures.append(
                    pool.submit(_safe_load, listing.root / entries[i + window][0], opts["resize"])
                )
            if isinstance(result, str):
                if not opts["skip_corrupt"]:
                    raise ValueError(
                        f"cannot read image {listing.root / rel} ({result}); fix or remove it, "
                        "or pass skip_corrupt=True to skip and count unreadable files"
                    )
                builder.skipped.append(rel)
                log.warning("skipping unreadable image %s (%s)", listing.root / rel, result)
                continue
            data, hw = result
            if fixed_hw is not None and hw != fixed_hw:
                raise ValueError(
                    f"images differ in size: {listing.root / builder._shape_of} is {fixed_hw[0]}x"
                    f"{fixed_hw[1]} but {listing.root / rel} is {hw[0]}x{hw[1]}; pass resize=N "
                    "to store every image N x N (shorter side to N, centre crop), or "
                    "variable_size=True to keep sizes and resize in the input pipeline"
                )
            yield rel, {"image": data, "label": label[cls], "file_name": rel}


def _safe_load(path: Path, resize: int | None):
    try:
        return _load_image(path, resize)
    except _Unreadable as e:
        return str(e)


def _fingerprint(source: Path, options: dict) -> str:
    """Identifies the source content cheaply (names and sizes, not paths or mtimes)."""
    h = hashlib.sha256()
    h.update(json.dumps({k: options[k] for k in ("resize", "variable_size")}).encode())
    if source.is_file():
        h.update(f"{source.name}|{source.stat().st_size}".encode())
    else:
        for dirpath, _, names in sorted(os.walk(source)):
            for n in sorted(names):
                if n.lower().endswith(IMAGE_EXTENSIONS):
                    p = Path(dirpath, n)
                    h.update(f"{p.relative_to(source)}|{p.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def _first_shape(listing: FolderListing, options: dict) -> tuple[tuple, str]:
    """The stored image shape (from the first readable image unless resized/variable)."""
    if options["variable_size"]:
        return (None, None, 3), ""
    if options["resize"]:
        return (options["resize"], options["resize"], 3), ""
    for entries in listing.files.values():
        for rel, _ in entries:
            result = _safe_load(listing.root / rel, None)
            if not isinstance(result, str):
                return (*result[1], 3), rel
    return (None, None, 3), ""  # every image unreadable: _decode_split reports it


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # one preparer per data dir (multi-host, test workers)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_meta(data_dir: str | os.PathLike, name: str) -> dict | None:
    """The ssl_jax side-car of a prepared folder dataset, or None when not prepared."""
    path = Path(data_dir) / name / VERSION / META_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _reuse(data_dir: Path, name: str, fingerprint: str, skip_corrupt: bool, source: Path):
    meta = read_meta(data_dir, name)
    if meta is None:
        return None
    if meta["fingerprint"] != fingerprint:
        raise ValueError(
            f"{data_dir / name} was prepared from different data ({meta['source']}, options "
            f"{meta['options']}) than {source}; delete that folder or pass another name="
        )
    if meta["skipped"] and not skip_corrupt:
        raise ValueError(
            f"{source} has {len(meta['skipped'])} unreadable image(s), e.g. "
            f"{meta['skipped'][0]}; pass skip_corrupt=True to use the prepared copy without them"
        )
    return meta


def prepare_image_folder(
    source: str | os.PathLike,
    *,
    data_dir: str | os.PathLike,
    name: str | None = None,
    resize: int | None = None,
    variable_size: bool = False,
    skip_corrupt: bool = False,
    num_workers: int | None = None,
) -> tuple[tfds.core.DatasetBuilder, dict]:
    """Prepares an image folder or archive as TFDS dataset ``name`` in ``data_dir``, once.

    Args:
      source: ``root`` folder with ``<split>/<class>/<image>``, or a tar archive of one.
      data_dir: TFDS data dir to write into (created if missing).
      name: dataset name; default derived from the source name (``cifar10_jpeg``).
      resize: store every image N x N (shorter side to N, then centre crop).
      variable_size: keep images of differing sizes as they are.
      skip_corrupt: skip unreadable images (counted in the returned metadata) instead of
        raising an error that names the first one.
      num_workers: decoding threads (default: CPU count).

    Returns:
      ``(builder, meta)``: the prepared read-only TFDS builder and the side-car dict
      (``source``, ``fingerprint``, ``options``, ``num_examples``, ``skipped`` file list).

    Raises:
      ValueError: missing/empty source, empty split, unreadable image (without
        ``skip_corrupt``), differing sizes (without ``resize``/``variable_size``), or a
        prepared dataset of that name made from other data.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise ValueError(f"image folder or archive {source} does not exist")
    if resize is not None and resize <= 0:
        raise ValueError(f"resize must be a positive side length, got {resize}")
    if resize and variable_size:
        raise ValueError("pass either resize=N or variable_size=True, not both")
    data_dir = Path(data_dir).expanduser()
    name = name or dataset_name(source)
    options = {"resize": resize, "variable_size": bool(variable_size)}
    fingerprint = _fingerprint(source, options)
    with _locked(data_dir / f".{name}.lock"):
        meta = _reuse(data_dir, name, fingerprint, skip_corrupt, source)
        if meta is None:
            meta = _prepare(source, data_dir, name, options, fingerprint, skip_corrupt, num_workers)
        else:
            log.info("reusing %s prepared from %s", data_dir / name, meta["source"])
    return tfds.builder(name, data_dir=os.fspath(data_dir)), meta


def _prepare(source, data_dir, name, options, fingerprint, skip_corrupt, num_workers) -> dict:
    with contextlib.ExitStack() as stack:
        root = source
        if source.is_file():
            if not is_archive(source):
                raise ValueError(f"{source} is neither a folder nor a tar archive")
            data_dir.mkdir(parents=True, exist_ok=True)
            tmp = stack.enter_context(tempfile.TemporaryDirectory(dir=data_dir, prefix=".extract-"))
            log.info("extracting %s", source)
            try:
                with tarfile.open(source) as tar:
                    tar.extractall(tmp, filter="data")
            except (tarfile.TarError, OSError, EOFError) as e:
                raise ValueError(f"cannot extract archive {source}: {e}") from e
            root = Path(tmp)
        listing = list_image_folder(root)
        opts = dict(options, source=str(source), skip_corrupt=skip_corrupt)
        opts["num_workers"] = num_workers or os.cpu_count() or 1
        builder = _make_builder_class(name)(
            listing=listing,
            shape=_first_shape(listing, opts),
            options=opts,
            data_dir=os.fspath(data_dir),
        )
        log.info("preparing %s from %s (%d classes)", name, source, len(listing.classes))
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                compute_stats=tfds.download.ComputeStatsMode.SKIP
            )
        )
        meta = {
            "source": str(source),
            "fingerprint": fingerprint,
            "options": options,
            "classes": list(listing.classes),
            "num_examples": {s: builder.info.splits[s].num_examples for s in listing.files},
            "skipped": builder.skipped,
        }
        if builder.skipped:
            log.warning("skipped %d unreadable image(s) in %s", len(builder.skipped), source)
        for split, n in meta["num_examples"].items():
            if n == 0:
                shutil.rmtree(Path(builder.data_dir), ignore_errors=True)
                raise ValueError(f"split {split!r} of {source} has no readable image")
        (Path(builder.data_dir) / META_FILE).write_text(json.dumps(meta, indent=1))
    return meta
