"""Where the trainer's batches come from: images held in memory (`ProxyData`) or streamed from disk
(`StreamingData`), behind one small interface so the training loop is the same for both.

A batch source has `steps_per_epoch`, `mean` and `std` (channel statistics of the training images, pixel
units), `epoch(epoch, start, steps)` (augmented uint8 training batches with their labels, on the run's
device), `eval_batches(split)` (unaugmented validation or test batches), `calibration_batches(count)` (the
first training images unaugmented, for BatchNorm statistics), `state()` / `load_state()` (what a
resumed run needs to draw the same batches) and `close()`. In a distributed run each process gets its own
share of every epoch and of the evaluation images.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch

from nas.proxy.augment import channel_stats, crop_flip, resize_images
from nas.proxy.data import ProxyData
from nas.proxy.stream import StreamingBatches, StreamingData


class InMemoryBatches:
    """Batches of a `ProxyData`: the images at the run's resolution live on the device as uint8, a seeded
    permutation orders each epoch, and the random crop and flip run batched on the device.

    One process draws the order and the augmentation from one generator seeded with the run seed, exactly
    as the trainer always has; in a distributed run every process draws the same order (one shared
    permutation, dealt out batch by batch like a DistributedSampler) and its own augmentation.
    """

    def __init__(self, data: ProxyData, *, resolution: int, batch_size: int, padding: int, flip: bool,
                 seed: int, rank: int, world: int, device: torch.device, eval_batch_size: int) -> None:
        train_x = resize_images(data.train_x, resolution)
        self.mean, self.std = channel_stats(train_x)
        self.train_x, self.train_y = train_x.to(device), data.train_y.to(device)
        self.data, self.resolution, self.device = data, resolution, device
        self.val_x = resize_images(data.val_x, resolution).to(device)
        self.batch_size, self.padding, self.flip, self.rank, self.world = batch_size, padding, flip, rank, world
        self.eval_batch_size = eval_batch_size
        self.steps_per_epoch = len(train_x) // (batch_size * world)  # the ragged last batch is dropped
        self.order_generator = torch.Generator().manual_seed(seed)
        self.augment_generator = self.order_generator if world == 1 else torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, rank]).generate_state(1)[0]))
        self._epoch_start_state = self.order_generator.get_state()
        self._in_epoch = False
        self._resume_augment_state: torch.Tensor | None = None

    def epoch(self, epoch: int, start: int, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Augmented batches `start` .. `start + steps - 1` of this epoch's seeded order."""
        self._epoch_start_state = self.order_generator.get_state()
        self._in_epoch = True
        order = torch.randperm(len(self.train_x), generator=self.order_generator).to(self.device)
        if self._resume_augment_state is not None:  # a resumed run picks up the draws where they stopped
            self.augment_generator.set_state(self._resume_augment_state)
            self._resume_augment_state = None
        global_batch = self.batch_size * self.world
        for i in range(start, start + steps):
            first = i * global_batch + self.rank * self.batch_size
            index = order[first:first + self.batch_size]
            yield crop_flip(self.train_x[index], self.padding, self.augment_generator, self.flip), self.train_y[index]
        self._in_epoch = False

    def eval_batches(self, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This process's share of the validation or test images, in batches of `eval_batch_size`."""
        if split == "val":
            images, labels = self.val_x, self.data.val_y.to(self.device)
        elif self.data.test_x is None:
            return
        else:
            images = resize_images(self.data.test_x, self.resolution).to(self.device)
            labels = self.data.test_y.to(self.device)
        if self.world > 1:
            images, labels = images[self.rank::self.world], labels[self.rank::self.world]
        for start in range(0, len(images), self.eval_batch_size):
            yield images[start:start + self.eval_batch_size], labels[start:start + self.eval_batch_size]

    def calibration_batches(self, count: int) -> Iterator[torch.Tensor]:
        """The first `count` training images, unaugmented, in eval-size batches (the same on every process)."""
        images = self.train_x[:count]
        for start in range(0, len(images), self.eval_batch_size):
            yield images[start:start + self.eval_batch_size]

    def state(self) -> dict[str, torch.Tensor]:
        """The generator states a resumed run restarts from: the order of the epoch under way (or of the
        next one, between epochs) and this process's augmentation draws."""
        if not self._in_epoch and self.augment_generator is self.order_generator:
            return {"order": self.order_generator.get_state()}  # one generator, between epochs: one state
        order = self._epoch_start_state if self._in_epoch else self.order_generator.get_state()
        return {"order": order.clone(), "augment": self.augment_generator.get_state()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `state()`: the next `epoch()` draws the saved order, then continues the saved augmentation."""
        self.order_generator.set_state(state["order"])
        self._resume_augment_state = state.get("augment")

    def close(self) -> None:
        """Nothing to release (the tensors go with the object)."""


def default_loader_workers(processes_per_machine: int = 1) -> int:
    """DataLoader workers per training process for streamed data: the cores left after one per process."""
    cores = os.cpu_count() or 1
    return max(1, min(8, cores // processes_per_machine - 1))


def batch_source(data: ProxyData | StreamingData, *, resolution: int, batch_size: int, padding: int,
                 flip: bool, seed: int, rank: int, world: int, device: torch.device, eval_batch_size: int,
                 loader_workers: int) -> InMemoryBatches | StreamingBatches:
    """The batch source for `data`: in memory for a `ProxyData`, `loader_workers` DataLoader processes for a
    `StreamingData`."""
    common = {"resolution": resolution, "batch_size": batch_size, "padding": padding, "flip": flip, "seed": seed,
              "rank": rank, "world": world, "device": device, "eval_batch_size": eval_batch_size}
    if isinstance(data, StreamingData):
        return StreamingBatches(data, workers=loader_workers, **common)
    return InMemoryBatches(data, **common)
