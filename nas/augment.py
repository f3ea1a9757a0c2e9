"""Batched image augmentation on uint8 tensors: resize, random crop with padding, horizontal flip, normalisation.

Everything works on a whole batch at once with tensor indexing -- no per-image Python loop -- and produces
channels_last (NHWC in memory) tensors, the layout the CPU convolution kernels are fastest on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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


def crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator, flip: bool = True) -> torch.Tensor:
    """Random crop of the zero-padded batch back to its size, plus a random horizontal flip per image.

    Crop offset and flip are folded into one gather of row and column indices, which also yields the
    channels_last layout for free. Returns a uint8 tensor of the input's logical shape.
    """
    n, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding)).permute(0, 2, 3, 1)  # NHWC view
    dy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator)
    rows = dy + torch.arange(h)
    cols = torch.arange(w).expand(n, w)
    if flip:
        mirrored = torch.rand(n, 1, generator=generator) < 0.5
        cols = torch.where(mirrored, w - 1 - cols, cols)
    cols = dx + cols
    batch = torch.arange(n)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of uint8 images, in pixel units (0..255)."""
    flat = images.transpose(0, 1).reshape(images.shape[1], -1).double()
    return flat.mean(dim=1).float(), flat.std(dim=1).clamp_min(1.0).float()


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (x - mean) / std in channels_last layout."""
    x = images.contiguous(memory_format=torch.channels_last).float()
    return x.sub_(mean.view(1, -1, 1, 1)).mul_((1.0 / std).view(1, -1, 1, 1))
