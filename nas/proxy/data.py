"""Datasets for the proxy task: loaders for the layouts users have, and the seeded train/validation split.

Images are held in memory as uint8 tensors of shape (N, C, H, W); labels as int64 tensors of shape (N,).
Sources understood by `load_dataset`:

- ``fashion-mnist`` -- Fashion-MNIST IDX files in /usr/share/datasets/fashion-mnist
  (Debian package ``dataset-fashion-mnist``); ``fashion-mnist:DIR`` reads the same four files from DIR.
- ``idx:DIR`` -- any MNIST-style directory: train-images-idx3-ubyte, train-labels-idx1-ubyte,
  t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally gzipped (``.gz``).
- ``cifar10:DIR`` / ``cifar100:DIR`` -- the CIFAR "python version" pickles (DIR or DIR/cifar-10-batches-py,
  DIR/cifar-100-python).
- ``folder:DIR`` -- an ImageNet-style folder: DIR/<class>/<image>. If DIR holds ``train/`` (and ``val/`` or
  ``test/``) sub-folders, those are used as the training and test sets; otherwise there is no test set.
  Images are converted to RGB and resized (shorter side, then centre crop) to ``image_size`` pixels, the
  resolution the run trains at. Only the files the split (and `subset`) keeps are decoded. A folder whose
  decoded images would not fit `memory_budget` bytes is not decoded here: `load_dataset` returns a
  `StreamingData` (nas.proxy.stream) that the trainer reads batch by batch with DataLoader workers.

The validation split is carved from the training set (the search never looks at the test set).
`dataset_class_names` names a source's labels where the data set has names (an export's config.json).
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from nas._common.parse import parse_bytes
from nas.errors import NasError
from nas.proxy.folder import (
    FOLDER_CHANNELS,
    check_corrupt_policy,
    decode_all,
    list_folder,
)
from nas.proxy.split import limited_sizes, split_indices
from nas.proxy.stream import StreamingData

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_HINT = "install it with `apt-get install -y dataset-fashion-mnist`"
DEFAULT_FOLDER_SIZE = 64  # pixels a folder is decoded at when the caller names no resolution
# Bytes of decoded images a folder data set may take in memory; above it the run streams from disk.
# `NAS_MEMORY_BUDGET` (e.g. 8G) changes the default for every command.
DEFAULT_MEMORY_BUDGET = 2 * 2**30
MEMORY_BUDGET_ENV = "NAS_MEMORY_BUDGET"


@dataclass(frozen=True)
class ProxyData:
    """Train/validation/test images (uint8, N x C x H x W) and labels (int64) held in memory."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    num_classes: int
    in_channels: int
    val_fraction: float = 0.1

    @property
    def image_size(self) -> int:
        """Side length of the stored images."""
        return int(self.train_x.shape[-1])

    def limit(self, subset: int) -> ProxyData:
        """Keep at most `subset` images of the train+val pool, in the same train/val proportion.

        The split is already shuffled, so a prefix is a seeded random subset.
        """
        n_train, n_val = limited_sizes(len(self.train_y), len(self.val_y), subset, self.val_fraction)
        if (n_train, n_val) == (len(self.train_y), len(self.val_y)):
            return self
        return replace(self, train_x=self.train_x[:n_train], train_y=self.train_y[:n_train],
                       val_x=self.val_x[:n_val], val_y=self.val_y[:n_val])


def default_memory_budget() -> int:
    """The memory budget for decoded folder images: `NAS_MEMORY_BUDGET` if set (e.g. 8G), else 2 GiB."""
    text = os.environ.get(MEMORY_BUDGET_ENV)
    return DEFAULT_MEMORY_BUDGET if not text else parse_bytes(text, MEMORY_BUDGET_ENV)


def load_dataset(source: str, *, val_fraction: float = 0.1, subset: int | None = None, seed: int = 0,
                 image_size: int | None = None, memory_budget: int | None = None,
                 corrupt: str = "fail") -> ProxyData | StreamingData:
    """Load `source` (see the module docstring) and split a seeded validation set off its training set.

    `subset` caps the number of training-pool images used (train + validation together), drawn with `seed`.
    The other settings apply to ``folder:`` sources only: `image_size` is the size images are decoded at
    (default 64; pass the run's resolution), `memory_budget` the bytes of decoded images held in memory
    (default `default_memory_budget()`; a larger folder comes back as a `StreamingData`), and `corrupt`
    what an undecodable image does: 'fail' (a NasError naming it) or 'skip' (left out, counted in the log).
    """
    if not 0.0 < val_fraction < 1.0:
        raise NasError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if subset is not None and subset < 2:
        raise NasError(f"subset must be at least 2 images, got {subset}")
    check_corrupt_policy(corrupt)
    kind, _, location = source.partition(":")
    if kind not in DATA_SOURCES and kind != "folder":
        raise NasError(f"unknown data source {source!r}; use fashion-mnist, idx:DIR, cifar10:DIR, "
                       "cifar100:DIR or folder:DIR")
    if kind not in OPTIONAL_DIRECTORY and not location:
        raise NasError(f"data source {source!r} needs a directory, e.g. {kind}:/path/to/data")
    if kind == "folder":
        budget = default_memory_budget() if memory_budget is None else memory_budget
        return _load_folder(Path(location), image_size or DEFAULT_FOLDER_SIZE, budget, corrupt,
                            val_fraction=val_fraction, subset=subset, seed=seed)
    train_x, train_y, test_x, test_y, num_classes = DATA_SOURCES[kind](location)
    return split_train_val(kind, train_x, train_y, test_x, test_y, num_classes,
                           val_fraction=val_fraction, subset=subset, seed=seed)


def split_train_val(name: str, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor | None,
                    test_y: torch.Tensor | None, num_classes: int, *, val_fraction: float,
                    subset: int | None, seed: int) -> ProxyData:
    """Shuffle the training pool with `seed`, cap it at `subset`, and carve off `val_fraction` as validation."""
    train_idx, val_idx = split_indices(name, len(train_y), val_fraction=val_fraction, subset=subset, seed=seed)
    return ProxyData(name=name, train_x=train_x[train_idx], train_y=train_y[train_idx],
                     val_x=train_x[val_idx], val_y=train_y[val_idx], test_x=test_x, test_y=test_y,
                     num_classes=num_classes, in_channels=int(train_x.shape[1]), val_fraction=val_fraction)


# --- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------------------

def _load_idx_dir(directory: Path, hint: str):
    if not directory.is_dir():
        raise NasError(f"data directory {directory} does not exist; {hint}")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find_idx(directory, f"{prefix}-images-idx3-ubyte", hint))
        labels = read_idx(_find_idx(directory, f"{prefix}-labels-idx1-ubyte", hint))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise NasError(f"{directory}: {prefix} images {tuple(images.shape)} and labels {tuple(labels.shape)} "
                           "do not match (expected N x H x W images and N labels)")
        parts[split] = (torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))
    num_classes = int(max(parts["train"][1].max(), parts["test"][1].max())) + 1
    return (*parts["train"], *parts["test"], num_classes)


def _find_idx(directory: Path, stem: str, hint: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise NasError(f"{directory}: missing {stem}[.gz]; {hint}")


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) of unsigned bytes into an array of the declared shape."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise NasError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise NasError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise NasError(f"{path}: truncated or corrupt: header declares shape {shape}, "
                       f"file holds {len(raw) - header} data bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


# --- CIFAR python pickles ---------------------------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only builds plain containers and numpy arrays: a data file must not run code."""

    _ALLOWED = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path, label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    if not path.is_file():
        raise NasError(f"missing CIFAR file {path}; unpack the python version of the dataset "
                       "(cifar-10-python.tar.gz / cifar-100-python.tar.gz) there")
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise NasError(f"{path}: not a CIFAR python batch ({exc})") from exc
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise NasError(f"{path}: expected N x 3072 data and N labels, got {data.shape} and {labels.shape}")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def _load_cifar(directory: Path, num_classes: int):
    sub = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"
    if (directory / sub).is_dir():
        directory = directory / sub
    if not directory.is_dir():
        raise NasError(f"CIFAR directory {directory} does not exist")
    if num_classes == 10:
        train = [_read_cifar_batch(directory / f"data_batch_{i}", b"labels") for i in range(1, 6)]
        test_x, test_y = _read_cifar_batch(directory / "test_batch", b"labels")
    else:
        train = [_read_cifar_batch(directory / "train", b"fine_labels")]
        test_x, test_y = _read_cifar_batch(directory / "test", b"fine_labels")
    train_x = torch.cat([x for x, _ in train])
    train_y = torch.cat([y for _, y in train])
    for labels in (train_y, test_y):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise NasError(f"{directory}: labels outside 0..{num_classes - 1}")
    return train_x, train_y, test_x, test_y, num_classes


# --- ImageNet-style folder --------------------------------------------------------------------------------

def _load_folder(directory: Path, size: int, memory_budget: int, corrupt: str, *, val_fraction: float,
                 subset: int | None, seed: int) -> ProxyData | StreamingData:
    """Split the folder's file list, then decode the kept files at `size` if they fit `memory_budget`;
    otherwise describe them for streaming."""
    files = list_folder(directory)
    paths, labels = files.train
    train_idx, val_idx = split_indices("folder", len(paths), val_fraction=val_fraction, subset=subset, seed=seed)
    test_count = len(files.test[0]) if files.test is not None else 0
    decoded_bytes = (len(train_idx) + len(val_idx) + test_count) * FOLDER_CHANNELS * size * size
    if decoded_bytes > memory_budget:
        return StreamingData(name="folder", train=_pick(paths, labels, train_idx.tolist()),
                             val=_pick(paths, labels, val_idx.tolist()),
                             test=None if files.test is None else _pick(*files.test, range(test_count)),
                             num_classes=len(files.classes), val_fraction=val_fraction, corrupt=corrupt)
    train_x, train_y = _decode(paths, labels, train_idx.tolist(), size, corrupt)
    val_x, val_y = _decode(paths, labels, val_idx.tolist(), size, corrupt)
    test_x = test_y = None
    if files.test is not None:
        test_x, test_y = _decode(*files.test, range(test_count), size, corrupt)
    if len(train_y) < 1 or len(val_y) < 1:
        raise NasError(f"{directory}: too few decodable images to split off a validation set")
    return ProxyData(name="folder", train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y, test_x=test_x,
                     test_y=test_y, num_classes=len(files.classes), in_channels=FOLDER_CHANNELS,
                     val_fraction=val_fraction)


def _pick(paths: tuple[str, ...], labels: tuple[int, ...], index) -> tuple[tuple[str, ...], torch.Tensor]:
    """The files at positions `index` and their labels (int64), for streaming."""
    return tuple(paths[i] for i in index), torch.tensor([labels[i] for i in index], dtype=torch.int64)


def _decode(paths: tuple[str, ...], labels: tuple[int, ...], index, size: int, corrupt: str
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The images at positions `index` decoded at `size` as N x 3 x size x size uint8, with their labels."""
    images, kept_labels, _ = decode_all(tuple(paths[i] for i in index), tuple(labels[i] for i in index),
                                        size, corrupt)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(kept_labels)


# --- class names -------------------------------------------------------------------------------------------

# The Fashion-MNIST labels 0..9, as its authors name them.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")


def dataset_class_names(source: str) -> tuple[str, ...] | None:
    """The names of labels 0, 1, ... of a data source, when it has them (None for IDX files, which do not)."""
    kind, _, location = source.partition(":")
    if kind == "fashion-mnist":
        return FASHION_MNIST_CLASSES
    if kind == "folder":
        return list_folder(Path(location)).classes
    if kind in ("cifar10", "cifar100"):
        return _cifar_class_names(Path(location), kind == "cifar10")
    return None


def _cifar_class_names(directory: Path, ten: bool) -> tuple[str, ...] | None:
    sub, meta, key = (("cifar-10-batches-py", "batches.meta", b"label_names") if ten
                      else ("cifar-100-python", "meta", b"fine_label_names"))
    path = directory / sub / meta if (directory / sub).is_dir() else directory / meta
    if not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            names = _ArrayUnpickler(f, encoding="bytes").load()[key]
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError):
        return None


# Each source kind of fixed-size images: (directory given after the colon) -> the raw arrays (train images,
# train labels, test images or None, test labels or None, class count). `folder:` has its own path
# (`_load_folder`): its images are decoded at the run's size, in memory or streamed.
DATA_SOURCES = {
    "fashion-mnist": lambda d: _load_idx_dir(Path(d) if d else FASHION_MNIST_DIR, FASHION_MNIST_HINT),
    "idx": lambda d: _load_idx_dir(Path(d), "put the four MNIST-style IDX files there"),
    "cifar10": lambda d: _load_cifar(Path(d), 10),
    "cifar100": lambda d: _load_cifar(Path(d), 100),
}
OPTIONAL_DIRECTORY = ("fashion-mnist",)  # kinds with a default directory
