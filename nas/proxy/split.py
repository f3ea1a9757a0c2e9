"""The seeded train/validation split of a training pool, shared by the in-memory and the streaming data sets."""

from __future__ import annotations

import torch

from nas.errors import NasError


def split_indices(name: str, pool: int, *, val_fraction: float, subset: int | None, seed: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) positions in a pool of `pool` items: shuffled with `seed`, capped at `subset`,
    `val_fraction` of them (at least one) for validation."""
    order = torch.randperm(pool, generator=torch.Generator().manual_seed(seed))
    if subset is not None:
        order = order[:subset]
    n_val = max(1, round(len(order) * val_fraction))
    if n_val >= len(order):
        raise NasError(f"{name}: {len(order)} training images are too few to split off a validation set")
    return order[n_val:], order[:n_val]


def limited_sizes(train: int, val: int, subset: int, val_fraction: float) -> tuple[int, int]:
    """Train and validation sizes when an already shuffled split is cut to `subset` images in the same
    proportion (unchanged when `subset` covers the pool)."""
    if subset >= train + val:
        return train, val
    n_val = max(1, round(subset * val_fraction))
    return max(1, subset - n_val), n_val
