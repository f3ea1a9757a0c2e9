"""Batched image augmentation on uint8 tensors: resize, random crop with padding, horizontal flip, optional
RandAugment, normalisation.

Everything works on a whole batch at once with tensor indexing -- no per-image Python loop -- and produces
channels_last (NHWC in memory) tensors, the layout the CPU convolution kernels are fastest on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nas.errors import NasError

_RESIZE_CHUNK = 4096  # images per interpolate call: bounds the float32 copy when resizing a whole dataset


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 images (N, C, H, W) to (N, C, size, size) with antialiased bilinear interpolation."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    chunks = []
    for start in range(0, len(images), _RESIZE_CHUNK):
        chunk = images[start:start + _RESIZE_CHUNK].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        chunks.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(chunks)


def crop_pixels(fraction: float, resolution: int) -> int:
    """The random crop's padding in pixels: `fraction` of the resolution, rounded (0: no crop)."""
    if not 0 <= fraction < 1:
        raise NasError(f"crop_padding must be 0 (no crop) or a fraction of the resolution below 1, got {fraction}")
    return round(fraction * resolution)


def crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator, flip: bool = True) -> torch.Tensor:
    """Random crop of the zero-padded batch back to its size, plus a random horizontal flip per image.

    Crop offset and flip are folded into one gather of row and column indices, which also yields the
    channels_last layout for free. Returns a uint8 tensor of the input's logical shape.
    """
    n, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding)).permute(0, 2, 3, 1)  # NHWC view
    # The draws come from the (CPU) generator whatever the images' device, so a seed means the same crops
    # on every device; the index tensors then move to the images (a no-op on the CPU).
    dy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator)
    rows = dy + torch.arange(h)
    cols = torch.arange(w).expand(n, w)
    if flip:
        mirrored = torch.rand(n, 1, generator=generator) < 0.5
        cols = torch.where(mirrored, w - 1 - cols, cols)
    cols = dx + cols
    batch = torch.arange(n)[:, None, None]
    device = images.device
    return padded[batch.to(device), rows[:, :, None].to(device), cols[:, None, :].to(device)].permute(0, 3, 1, 2)


class ChannelMoments:
    """Per-channel histograms of uint8 pixel values, added batch by batch: exact statistics over a whole data
    set with no float copy of it (a histogram is 256 counts per channel)."""

    def __init__(self) -> None:
        self.histograms: torch.Tensor | None = None  # (C, 256) int64

    def add(self, images: torch.Tensor) -> None:
        """Add a batch of uint8 images (N, C, H, W)."""
        counts = torch.stack([torch.bincount(images[:, c].reshape(-1), minlength=256)
                              for c in range(images.shape[1])])
        self.histograms = counts if self.histograms is None else self.histograms + counts

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and (unbiased) standard deviation in pixel units, the deviation at least 1."""
        if self.histograms is None or int(self.histograms[0].sum()) < 2:
            raise ValueError("channel statistics need at least two pixels")
        means, stds = [], []
        for counts in self.histograms.tolist():  # Python integers: the sums below are exact
            n = sum(counts)
            total = sum(value * count for value, count in enumerate(counts))
            squares = sum(value * value * count for value, count in enumerate(counts))
            means.append(total / n)
            stds.append(math.sqrt((squares * n - total * total) / (n * (n - 1))))
        return torch.tensor(means).float(), torch.tensor(stds).clamp_min(1.0).float()


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of uint8 images, in pixel units (0..255)."""
    moments = ChannelMoments()
    moments.add(images)
    return moments.mean_std()


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Pixels (N, C, H, W), uint8 or float in 0..255 -> a new float32 (x - mean) / std in channels_last layout."""
    x = images.to(dtype=torch.float32, memory_format=torch.channels_last, copy=True)
    return x.sub_(mean.view(1, -1, 1, 1)).mul_((1.0 / std).view(1, -1, 1, 1))


RAND_AUGMENT_OPS = 15  # operations in kornia's default RandAugment policy


def check_rand_augment(ops: int, magnitude: int) -> None:
    """NasError unless `ops` is 0 (off) to RAND_AUGMENT_OPS and `magnitude` is 1..29."""
    if not 0 <= ops <= RAND_AUGMENT_OPS:
        raise NasError(f"RandAugment: ops must be 0 (off) to {RAND_AUGMENT_OPS}, got {ops}")
    if not 0 < magnitude < 30:
        raise NasError(f"RandAugment: magnitude must be 1..29, got {magnitude}")


class RandAugment:
    """RandAugment (Cubuk et al., 2020) on a uint8 batch, by kornia; returns float pixels in 0..255.

    kornia is the well-kept library that works with the CPU-only torch here (torchvision's and timm's versions
    need their compiled CUDA parts). Its RandAugment draws the `ops` operations once per call, so a batch shares
    them while each image gets its own random sign. It uses torch's global generator, which the
    trainer seeds. AutoAugment is not wired in: its policy was learned for ImageNet, and RandAugment's two
    settings are the ones a proxy can tune.
    """

    def __init__(self, ops: int, magnitude: int) -> None:
        check_rand_augment(ops, magnitude)
        if ops == 0:
            raise NasError("RandAugment: ops must be at least 1")
        from kornia.augmentation.auto import (
            RandAugment as KorniaRandAugment,  # slow import; only when used
        )

        self.policy = KorniaRandAugment(n=ops, m=magnitude)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        channels = images.shape[1]
        if channels not in (1, 3):
            raise NasError(f"RandAugment works on 1- or 3-channel images, got {channels} channels")
        x = images.float().div_(255.0)
        # Grey images go through as three equal channels (the colour operations need RGB); every operation
        # keeps the channels equal, so the first one is the result.
        out = self.policy(x.expand(-1, 3, -1, -1))[:, :channels] if channels == 1 else self.policy(x)
        return out.clamp_(0.0, 1.0).mul_(255.0)
