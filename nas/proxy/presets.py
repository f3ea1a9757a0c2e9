"""Proxy presets: the length and recipe of one proxy training run, by name.

The recipe is the EfficientNet reference's, compressed to the run's length, with three proxy-specific
departures (a quarter of the reference's learning rate, fan-in initialisation, a faster BN momentum), each
chosen because the reference's value barely trains in a few hundred steps; `bench/bench_proxy_recipe.py`
trains B0 with each variant and prints the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from nas.errors import NasError
from nas.proxy.augment import check_rand_augment


@dataclass(frozen=True)
class ProxyPreset:
    """Length and recipe of one proxy training run."""

    name: str
    epochs: int
    batch_size: int
    resolution: int
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

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "resolution", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise NasError(f"preset {self.name!r}: {name} must be at least 1, got {getattr(self, name)}")
        if self.subset is not None and self.subset < 2:
            raise NasError(f"preset {self.name!r}: subset must be at least 2 images, got {self.subset}")
        check_rand_augment(self.randaugment_ops, self.randaugment_magnitude)
        if self.resolution < 8:
            raise NasError(f"preset {self.name!r}: resolution must be at least 8 pixels, got {self.resolution}")

    def with_changes(self, **changes) -> ProxyPreset:
        """A copy with the given fields changed (None values are ignored), validated."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise NasError(f"unknown preset field(s): {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS: dict[str, ProxyPreset] = {
    # A few seconds on 2 cores with a small net; for tests.
    "tiny": ProxyPreset("tiny", epochs=2, batch_size=32, resolution=16, subset=320),
    # One search trial of a B0-size network: 36,000 training images at 32 px.
    "search": ProxyPreset("search", epochs=4, batch_size=128, resolution=32, subset=10000),
    # One compound-scaling grid point (the caller multiplies the resolution by gamma).
    "scale": ProxyPreset("scale", epochs=5, batch_size=128, resolution=32, subset=20000),
    # Full training: B0 above 90% Fashion-MNIST test top-1 (`nas train b0` prints it).
    "full": ProxyPreset("full", epochs=15, batch_size=128, resolution=32),
}


def get_preset(name: str) -> ProxyPreset:
    """The preset called `name`; NasError naming the known presets otherwise."""
    if name not in PRESETS:
        raise NasError(f"unknown proxy preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]
