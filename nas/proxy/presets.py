"""Proxy presets: the length and recipe of one proxy training run, by name.

A preset's length is the number of training images it shows the network (`images`: optimizer steps times the
global batch), not a number of epochs, so that a data set of a few thousand images gets as many optimizer
steps as the Fashion-MNIST subset the presets were tuned on, and a data set of a million images is not read
ten times over. The shipped sizes are those epochs of Fashion-MNIST exactly (the same optimizer steps there).
`epochs` sizes a run in passes over the data instead (`--epochs`, or `with_changes(epochs=...)`).

The recipe is the EfficientNet reference's, compressed to the run's length, with three proxy-specific
departures (a quarter of the reference's learning rate, fan-in initialisation, a faster BN momentum), each
chosen because the reference's value barely trains in a few hundred steps, and the `search` preset leaves out
most of the random crop and the flip for the same reason; `bench/bench_proxy_recipe.py` trains B0 with each
variant and prints the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from nas._common.parse import is_int, is_number
from nas.errors import NasError
from nas.model.builder import INIT_SCHEMES
from nas.proxy.augment import check_rand_augment, crop_pixels


@dataclass(frozen=True)
class ProxyPreset:
    """Length and recipe of one proxy training run."""

    name: str
    batch_size: int  # per process: a distributed run's global batch is batch_size x processes
    resolution: int
    images: int | None = None  # training images seen (steps x global batch); exactly one of images, epochs
    epochs: int | None = None  # passes over the training images, instead of `images`
    subset: int | None = None  # images of the train+val pool; None = all
    lr_per_256: float = 0.004  # a quarter of the reference's 0.016 per 256 images (see the module docstring)
    weight_decay: float = 1e-5
    label_smoothing: float = 0.1
    ema_decay: float = 0.9999  # the reference's per-step decay; compressed to the run's length
    crop_padding: float = 0.125  # random-crop padding as a fraction of the resolution
    flip: bool = True
    # RandAugment: operations per batch (0 = off) and their magnitude (kornia's 0..30 scale). Off by default:
    # the short proxy runs underfit already, and it lowers their accuracy.
    randaugment_ops: int = 0
    randaugment_magnitude: int = 9
    eval_batch_size: int = 500
    # PyTorch-convention BN momentum. The reference's 0.01 averages over ~100 steps: in a run of a few hundred
    # steps the running statistics would still be near their initial values.
    bn_momentum: float = 0.1
    # Weight init (nas.model.builder.INIT_SCHEMES). The reference's He-normal on fan-out makes weights ~5x larger
    # under BN, i.e. a ~5x smaller effective step: right for 350 epochs, far too slow for a proxy.
    init: str = "fan_in"
    # Training images the EMA network's BatchNorm statistics are recomputed on before every evaluation (0: off).
    # Running averages lag weights that move fast: a short or deep run at a high learning rate otherwise
    # evaluates near chance in eval mode while its train-mode accuracy is far above it.
    bn_calibration: int = 1024

    def __post_init__(self) -> None:
        if (self.images is None) == (self.epochs is None):
            raise NasError(f"preset {self.name!r}: give its length as images or as epochs (exactly one), "
                           f"got images={self.images} epochs={self.epochs}")
        if self.bn_calibration < 0:
            raise NasError(f"preset {self.name!r}: bn_calibration must be 0 (off) or more images")
        for name in ("images", "epochs", "batch_size", "resolution", "eval_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise NasError(f"preset {self.name!r}: {name} must be at least 1, got {getattr(self, name)}")
        if self.subset is not None and self.subset < 2:
            raise NasError(f"preset {self.name!r}: subset must be at least 2 images, got {self.subset}")
        # What a typed FIELD=VALUE could otherwise set to a value that fails every trial later (NaN fails too).
        for name, fits, expected in (
                ("lr_per_256", 0 < self.lr_per_256 < math.inf, "a positive number"),
                ("weight_decay", 0 <= self.weight_decay < math.inf, "0 or a positive number"),
                ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
                ("ema_decay", 0 <= self.ema_decay < 1, "in [0, 1)"),
                ("bn_momentum", 0 < self.bn_momentum <= 1, "in (0, 1]")):
            if not fits:
                raise NasError(f"preset {self.name!r}: {name} must be {expected}, got {getattr(self, name)}")
        if self.init not in INIT_SCHEMES:
            raise NasError(f"preset {self.name!r}: init must be one of {', '.join(INIT_SCHEMES)}, got {self.init!r}")
        check_rand_augment(self.randaugment_ops, self.randaugment_magnitude)
        crop_pixels(self.crop_padding, self.resolution)  # refuses a padding outside [0, 1)
        if self.resolution < 8:
            raise NasError(f"preset {self.name!r}: resolution must be at least 8 pixels, got {self.resolution}")

    def with_changes(self, **changes) -> ProxyPreset:
        """A copy with the given fields changed (None values are ignored), validated.

        The length is one setting: giving `epochs` drops `images` and giving `images` drops `epochs`.
        """
        kinds = {f.name: f.type for f in fields(self)}
        unknown = set(changes) - set(kinds)
        if unknown:
            raise NasError(f"unknown preset field(s): {', '.join(sorted(unknown))}")
        changes = {k: v for k, v in changes.items() if v is not None}
        for name, value in changes.items():
            _check_kind(name, kinds[name], value)
            if kinds[name] == "float":  # 0 and 0.0 are one recipe (a study's stored changes compare them)
                changes[name] = float(value)
        if "epochs" in changes and "images" in changes:
            raise NasError("a preset's length is images or epochs, not both")
        if "epochs" in changes:
            changes["images"] = None
        elif "images" in changes:
            changes["epochs"] = None
        return replace(self, **changes)

    def total_steps(self, steps_per_epoch: int, global_batch: int) -> int:
        """Optimizer steps of a run whose epoch is `steps_per_epoch` steps of `global_batch` images (at least 1)."""
        if self.epochs is not None:
            return self.epochs * steps_per_epoch
        return max(1, self.images // global_batch)

    def shortened(self, fraction: float) -> ProxyPreset:
        """The same recipe over `fraction` of the run's length (at least one batch, or one epoch): a
        successive-halving rung. The schedule is compressed into the shorter run, as for any length."""
        if self.epochs is not None:
            return self.with_changes(epochs=max(1, round(self.epochs * fraction)))
        return self.with_changes(images=max(self.batch_size, round(self.images * fraction)))

    @property
    def length(self) -> str:
        """The run's length in words, e.g. '35,840 images' or '3 epochs'."""
        return f"{self.epochs} epochs" if self.epochs is not None else f"{self.images:,} images"


def _check_kind(name: str, annotation: str, value: object) -> None:
    """NasError unless `value` fits the field's annotation (a typed FIELD=VALUE, e.g. flip=yes, is caught here)."""
    kind = annotation.split(" | ")[0]
    fits = {"bool": isinstance(value, bool), "int": is_int(value), "float": is_number(value),
            "str": isinstance(value, str)}[kind]
    if not fits:
        raise NasError(f"preset field {name} must be of type {kind}, got {value!r}")


# Each length is so many epochs of Fashion-MNIST's training pool (60,000 or the subset, less the 10%
# validation split) in whole batches, i.e. the steps these presets had when they were sized in epochs.
PRESETS: dict[str, ProxyPreset] = {
    # A few seconds on 2 cores with a small net; for tests: 18 steps (2 epochs of 288 images at batch 32).
    "tiny": ProxyPreset("tiny", images=576, batch_size=32, resolution=16, subset=320),
    # One search trial of a B0-size network at 32 px: 280 steps (4 epochs of 9,000 images). A 1-pixel crop and
    # no flip: the run underfits, and without the reference's 4-pixel crop and flip its accuracy is higher and
    # ranks networks more consistently across seeds (bench/bench_supernet_ranking.py --proxy-change).
    "search": ProxyPreset("search", images=35_840, batch_size=128, resolution=32, subset=10000,
                          crop_padding=0.03125, flip=False),
    # One compound-scaling grid point (the caller multiplies the resolution by gamma): 700 steps (5 x 18,000).
    # Its rate is 16x the search preset's: the grid's successive-halving rungs are 35-140 steps, and at the
    # search preset's rate a 35-step run of B0 did not leave chance (its loss stayed at ln 10).
    "scale": ProxyPreset("scale", images=89_600, batch_size=128, resolution=32, subset=20000, lr_per_256=0.064),
    # Full training (`nas train b0` prints the test top-1 it reaches): 6,315 steps
    # (15 epochs of 54,000 images). On a large data set of your own, size it with --epochs.
    "full": ProxyPreset("full", images=808_320, batch_size=128, resolution=32),
    # Fine-tuning trained weights on a new data set (`nas train --init-from`): the length of a search trial
    # at a tenth of the learning rate, so the transferred features are adjusted rather than overwritten.
    "finetune": ProxyPreset("finetune", images=35_840, batch_size=128, resolution=32, lr_per_256=0.0004),
}


def get_preset(name: str) -> ProxyPreset:
    """The preset called `name`; NasError naming the known presets otherwise."""
    if name not in PRESETS:
        raise NasError(f"unknown proxy preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]
