"""ImageNet-style folders (DIR/<class>/<image>, or DIR/train + DIR/val): the file lists, and decoding one image
at the size a run trains at.

Listing a folder reads no image, so a folder of a million files is listed in seconds; `nas.proxy.data`
then decodes it into memory when it fits the memory budget, or `nas.proxy.stream` reads it batch by batch.
A file that cannot be decoded is, by the `corrupt` setting (`CORRUPT_POLICIES`), a NasError naming it
(`fail`, the default) or left out with a count in the log (`skip`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas._common.images import UnreadableImage, read_square_image
from nas.errors import NasError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CORRUPT_POLICIES = ("fail", "skip")
FOLDER_CHANNELS = 3  # every image is converted to RGB

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FolderFiles:
    """The image files of a folder data set with their labels (class folders in sorted order)."""

    classes: tuple[str, ...]
    train: tuple[tuple[str, ...], tuple[int, ...]]  # (paths, labels)
    test: tuple[tuple[str, ...], tuple[int, ...]] | None


def list_folder(directory: Path) -> FolderFiles:
    """The files of DIR/<class>/<image> (or DIR/train and DIR/val or DIR/test), without decoding any."""
    if not directory.is_dir():
        raise NasError(f"image folder {directory} does not exist")
    test_dir = next((directory / n for n in ("val", "test") if (directory / n).is_dir()), None)
    train_dir = directory / "train" if (directory / "train").is_dir() else directory
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise NasError(f"image folder {train_dir} has no class sub-folders (expected {train_dir}/<class>/<image>)")
    train = _list_class_folders(train_dir, classes)
    test = _list_class_folders(test_dir, classes) if test_dir is not None and train_dir != directory else None
    return FolderFiles(tuple(classes), train, test)


def _list_class_folders(root: Path, classes: list[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise NasError(f"{root}: class folder {name!r} is missing (the training set has it)")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    if not paths:
        raise NasError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    return tuple(paths), tuple(labels)


def check_corrupt_policy(policy: str) -> None:
    """NasError unless `policy` is one of CORRUPT_POLICIES."""
    if policy not in CORRUPT_POLICIES:
        raise NasError(f"unknown corrupt-image policy {policy!r}; use one of {', '.join(CORRUPT_POLICIES)}")


def corrupt_error(path: str, reason: str) -> NasError:
    """The one-line error for a corrupt image under the `fail` policy."""
    return NasError(f"{path}: cannot decode image ({reason}); --corrupt skip leaves such files out")


def read_image(path: str | Path, size: int) -> np.ndarray:
    """Decode one image to RGB (H x W x 3 uint8), its shorter side resized to `size`, centre-cropped square, as
    every image of the tool is read (nas._common.images); UnreadableImage when Pillow cannot read it."""
    return read_square_image(path, size, "RGB")


def decode_all(paths: tuple[str, ...], labels: tuple[int, ...], size: int, corrupt: str
               ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image of `paths` decoded at `size` (N x size x size x 3) with its labels, and the skipped paths.

    Under `corrupt='fail'` the first undecodable file is a NasError naming it.
    """
    images = np.empty((len(paths), size, size, FOLDER_CHANNELS), dtype=np.uint8)
    keep = np.ones(len(paths), dtype=bool)
    skipped: list[str] = []
    for i, path in enumerate(paths):
        try:
            images[i] = read_image(path, size)
        except UnreadableImage as exc:
            if corrupt == "fail":
                raise corrupt_error(exc.path, exc.reason) from None
            keep[i] = False
            skipped.append(path)
    labels_array = np.asarray(labels, dtype=np.int64)
    if not skipped:
        return images, labels_array, skipped
    log.warning("skipped %d corrupt image(s) of %d (first: %s)", len(skipped), len(paths), skipped[0])
    return images[keep], labels_array[keep], skipped
