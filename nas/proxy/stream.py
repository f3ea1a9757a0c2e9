"""A folder data set read from disk batch by batch, for folders whose decoded images do not fit in memory.

`StreamingData` is the file lists of the seeded split (what `nas.proxy.data.load_dataset` returns for such a
folder). The trainer reads it through `StreamingBatches`: a `torch.utils.data.DataLoader` whose worker
processes each decode a whole batch with Pillow at the run's resolution and augment it (random crop and
flip, seeded by run seed, epoch, step and rank, so a batch is the same whatever the number of workers),
while the network trains on the previous one. A `DistributedSampler` deals each process of a distributed run
its share of every epoch. The channel statistics come from a seeded sample of the training images.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from nas._common.images import UnreadableImage
from nas.errors import NasError
from nas.proxy.augment import ChannelMoments, crop_flip
from nas.proxy.folder import FOLDER_CHANNELS, corrupt_error, read_image
from nas.proxy.split import limited_sizes

STATS_SAMPLE = 1000  # training images the channel statistics are estimated from
PREFETCH_BATCHES = 4  # batches each worker decodes ahead

log = logging.getLogger(__name__)

Files = tuple[tuple[str, ...], torch.Tensor]  # (paths, int64 labels)


@dataclass(frozen=True)
class StreamingData:
    """Train/validation/test files of a folder data set (labels as int64 tensors), decoded when read."""

    name: str
    train: Files
    val: Files
    test: Files | None
    num_classes: int
    in_channels: int = FOLDER_CHANNELS
    val_fraction: float = 0.1
    corrupt: str = "fail"  # what an undecodable image does: 'fail' or 'skip' (nas.proxy.folder)

    @property
    def train_y(self) -> torch.Tensor:
        return self.train[1]

    @property
    def val_y(self) -> torch.Tensor:
        return self.val[1]

    @property
    def test_y(self) -> torch.Tensor | None:
        return None if self.test is None else self.test[1]

    def limit(self, subset: int) -> StreamingData:
        """Keep at most `subset` files of the train+val pool, in the same train/val proportion."""
        n_train, n_val = limited_sizes(len(self.train[1]), len(self.val[1]), subset, self.val_fraction)
        return replace(self, train=(self.train[0][:n_train], self.train[1][:n_train]),
                       val=(self.val[0][:n_val], self.val[1][:n_val]))


class _BatchReader(Dataset):
    """One item is one batch: key (split, positions, augmentation seed or None) -> (uint8 images N x C x S x S,
    labels, [(path, reason)] of the files that could not be decoded)."""

    def __init__(self, data: StreamingData, size: int, padding: int, flip: bool) -> None:
        self.files = {"train": data.train, "val": data.val, "test": data.test}
        self.size, self.padding, self.flip = size, padding, flip

    def __getitem__(self, key: tuple[str, list[int], int | None]):
        split, positions, seed = key
        paths, labels = self.files[split]
        images, kept, bad = [], [], []
        for i in positions:
            try:
                images.append(read_image(paths[i], self.size))
                kept.append(i)
            except UnreadableImage as exc:
                bad.append((exc.path, exc.reason))
        if not images:
            return torch.empty((0, FOLDER_CHANNELS, self.size, self.size), dtype=torch.uint8), labels[:0], bad
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # NCHW view of NHWC memory
        if seed is not None:
            batch = crop_flip(batch, self.padding, torch.Generator().manual_seed(seed), self.flip)
        return batch, labels[kept], bad

    def __len__(self) -> int:  # DataLoader asks; the plan, not this number, decides what is read
        return sum(len(files[0]) for files in self.files.values() if files is not None)


class _Plan(Sampler):
    """The batch keys the worker pool decodes next; the trainer sets them before each pass."""

    def __init__(self) -> None:
        self.keys: list = []

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def batch_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """The augmentation seed of one training batch: a function of where it sits in the run only."""
    return int(np.random.SeedSequence([seed, epoch, step, rank]).generate_state(1)[0])


class StreamingBatches:
    """The trainer's batches from a `StreamingData`: DataLoader workers decode, resize and augment."""

    def __init__(self, data: StreamingData, *, resolution: int, batch_size: int, padding: int, flip: bool,
                 seed: int, rank: int, world: int, device: torch.device, workers: int,
                 eval_batch_size: int) -> None:
        self.data, self.batch_size, self.seed, self.rank, self.world = data, batch_size, seed, rank, world
        self.device, self.eval_batch_size = device, eval_batch_size
        self.plan = _Plan()
        self.loader: DataLoader | None = DataLoader(
            _BatchReader(data, resolution, padding, flip), batch_size=None, sampler=self.plan,
            num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda",
            prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
            generator=torch.Generator())  # its seed draws must not move torch's global generator (dropout)
        # DistributedSampler deals every process its share (all of it for one process), shuffled per epoch.
        self.sampler = DistributedSampler(range(len(data.train[0])), num_replicas=world, rank=rank, shuffle=True,
                                          seed=seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // batch_size
        self.skipped: dict[str, str] = {}
        self.mean, self.std = self._channel_stats(seed)

    def _channel_stats(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        count = len(self.data.train[0])
        sample = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:STATS_SAMPLE].tolist()
        moments = ChannelMoments()
        for images, _ in self._read([("train", sample[i:i + self.batch_size], None)
                                     for i in range(0, len(sample), self.batch_size)], to_device=False):
            moments.add(images)
        return moments.mean_std()

    def epoch(self, epoch: int, start: int, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Augmented training batches `start` .. `start + steps - 1` of `epoch`, on the device."""
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        b = self.batch_size
        yield from self._read([("train", order[i * b:(i + 1) * b], batch_seed(self.seed, epoch, i, self.rank))
                               for i in range(start, start + steps)])

    def eval_batches(self, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This process's share of the validation or test images, unaugmented, on the device."""
        files = self.data.val if split == "val" else self.data.test
        if files is None:
            return
        positions = list(range(self.rank, len(files[0]), self.world))
        step = self.eval_batch_size
        yield from self._read([(split, positions[i:i + step], None) for i in range(0, len(positions), step)])

    def calibration_batches(self, count: int) -> Iterator[torch.Tensor]:
        """The first `count` training images, unaugmented, on the device (the same on every process)."""
        positions = list(range(min(count, len(self.data.train[0]))))
        step = self.eval_batch_size
        for images, _ in self._read([("train", positions[i:i + step], None) for i in range(0, len(positions), step)]):
            yield images

    def _read(self, keys: list, to_device: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.plan.keys = keys
        for images, labels, bad in self.loader:
            if bad:
                self._corrupt(bad)
                if not len(labels):
                    raise NasError(f"every image of a batch is corrupt (e.g. {bad[0][0]}): check the folder")
            if to_device:
                images = images.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
            yield images, labels

    def _corrupt(self, bad: list[tuple[str, str]]) -> None:
        if self.data.corrupt == "fail":
            raise corrupt_error(*bad[0])
        new = [(path, reason) for path, reason in bad if path not in self.skipped]
        self.skipped.update(new)
        if new:
            log.warning("skipped %d corrupt image(s) so far (now %s: %s)", len(self.skipped), *new[0])

    def state(self) -> dict[str, torch.Tensor]:
        """Nothing to save: every batch follows from the seed, the epoch and the step."""
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Counterpart of `state` (nothing to restore)."""

    def close(self) -> None:
        """Stop the worker processes."""
        self.loader = None  # the persistent workers shut down with the loader's iterator
