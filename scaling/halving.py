"""Successive halving's rungs for the grid study, and the rule that says whether a run trained (no torch).

A rung trains some points on a number of training images for some epochs under some seeds; every run of
every rung is scored on one fixed validation set (`VAL_IMAGES`), so rungs and points compare alike.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from nas.errors import NasError
from nas.proxy.chance import near_chance

# A run trained when its last-epoch loss is below this share of ln(classes), the loss of guessing (where an
# untrained network sits), and its validation accuracy is not near chance (nas.proxy.chance).
TRAINED_LOSS_SHARE = 1.0


@dataclass(frozen=True)
class Rung:
    """One round of successive halving: which points it trains (`keep`: a share of the previous rung's points
    when below 1, a count when 1 or more; rung 0 trains them all), on how many training images for how many
    epochs, under how many seeds."""

    keep: float
    images: int
    epochs: int = 1
    seeds: int = 1


# The default: every point on 4,500 images, the better half on 9,000, the two best (and the reference) twice
# as long under two seeds. Sized to the README's 15-minute scaling run on 2 cores; `--rung-images` and
# `--final-seeds` change it.
DEFAULT_RUNGS = (Rung(1.0, 4500), Rung(0.5, 9000), Rung(2, 9000, epochs=2, seeds=2))
VAL_IMAGES = 2000  # one validation set for every run, so all rungs compare alike


def make_rungs(images: tuple[int, ...], final_seeds: int) -> tuple[Rung, ...]:
    """Rungs from training-image counts: the first trains every point, each next one the better half, the
    last the best two (under `final_seeds` seeds, two epochs)."""
    if not images or any(count < 2 for count in images) or final_seeds < 1:
        raise NasError("--rung-images needs one or more image counts of at least 2, --final-seeds at least 1")
    if len(images) == 1:
        return (Rung(1.0, images[0], epochs=2, seeds=final_seeds),)
    middle = tuple(Rung(0.5, count) for count in images[1:-1])
    return (Rung(1.0, images[0]), *middle, Rung(2, images[-1], epochs=2, seeds=final_seeds))


def did_train(history: list[Any], num_classes: int) -> str | None:
    """Why a run's per-epoch history shows it did not train, or None when it did."""
    last = history[-1]
    if not last.train_loss < TRAINED_LOSS_SHARE * math.log(num_classes):
        return f"did not train: last-epoch loss {last.train_loss:.3f} stayed near ln({num_classes}) = " \
               f"{math.log(num_classes):.3f}"
    if near_chance(last.val_acc, num_classes):
        return f"did not train: validation accuracy {last.val_acc:.3f} is near chance (1/{num_classes})"
    return None


def rung_data(data: Any, rung: Rung) -> Any:
    """The rung's training images (a prefix of the seeded split) and the one fixed validation set."""
    images = min(rung.images, len(data.train_y))
    val = min(VAL_IMAGES, len(data.val_y))
    return dataclasses.replace(data, train_x=data.train_x[:images], train_y=data.train_y[:images],
                               val_x=data.val_x[:val], val_y=data.val_y[:val])


def proxy_resolution(preset: Any, gamma: float) -> int:
    """The proxy's resolution scaled by gamma, to the nearest pixel."""
    return int(round(preset.resolution * gamma))
