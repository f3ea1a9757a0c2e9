"""Training a supernet: the sandwich rule with in-place distillation (BigNAS), on the proxy data with the
project's recipe (RMSProp with TF semantics, the compressed reference schedule, weight EMA, label smoothing).

Each step trains, on one batch, the largest architecture of the space (with the space's dropout, against the
labels), the smallest, and `random_archs` random ones drawn inside the search's FLOPs window (so the region the
search will score gets trained), the last three against the largest's softened predictions; their gradients
add up into one optimizer step.

Everything a step draws (its batch, augmentation, the random architectures) is a function of the seed and the
step number, so a run killed and resumed from its checkpoint continues exactly as if it had never stopped.
The checkpoint is written atomically every `checkpoint_every_s` seconds and at the end.
"""

from __future__ import annotations

import io
import json
import logging
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nas._common.atomic import write_bytes_atomic
from nas.arch.cost import count_flops
from nas.arch.space import RandomChoices, SearchSpace, decode, sample
from nas.arch.spec import Spec
from nas.errors import NasError
from nas.model.device import resolve_device
from nas.proxy.augment import channel_stats, crop_flip, crop_pixels, normalize, resize_images
from nas.proxy.data import ProxyData
from nas.proxy.ema import ModelEma, compressed_decay
from nas.proxy.optim import RMSpropTF
from nas.proxy.schedule import compressed_schedule
from nas.supernet.network import Supernet

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "supernet.pt"
# The supernet's weight layout (nas.supernet.network); a checkpoint of another layout is trained again.
# 2: depthwise-separable blocks on their own weights.
SUPERNET_LAYOUT = 2
WINDOW_TRIES = 200  # random draws before settling for the candidate nearest the FLOPs window


@dataclass(frozen=True)
class SupernetPreset:
    """Length and recipe of one supernet training run; its length is in optimizer steps."""

    name: str
    steps: int
    batch_size: int
    resolution: int
    subset: int | None = None  # images of the train+val pool; None = all
    random_archs: int = 2  # sandwich members between the largest and the smallest
    distill: bool = True  # the smaller members learn from the largest's predictions (in-place distillation)
    lr_per_256: float = 0.004  # the proxy trainer's rate (nas.proxy.presets)
    weight_decay: float = 1e-5
    label_smoothing: float = 0.1
    ema_decay: float = 0.9999  # the reference's per-step decay, compressed to the run's length
    crop_padding: float = 0.125
    flip: bool = True
    checkpoint_every_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "resolution"):
            if getattr(self, name) < 1:
                raise NasError(f"supernet preset {self.name!r}: {name} must be at least 1, got {getattr(self, name)}")
        if self.random_archs < 0:
            raise NasError(f"supernet preset {self.name!r}: random_archs must be 0 or more")
        crop_pixels(self.crop_padding, self.resolution)  # refuses a negative padding

    def with_changes(self, **changes: Any) -> SupernetPreset:
        """A copy with the given fields changed (None values are ignored)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise NasError(f"unknown supernet preset field(s): {', '.join(sorted(unknown))}")
        return replace(self, **{key: value for key, value in changes.items() if value is not None})


SUPERNET_PRESETS: dict[str, SupernetPreset] = {
    # Seconds on 2 cores with the tiny space; for tests.
    "tiny": SupernetPreset("tiny", steps=12, batch_size=32, resolution=16, subset=400, checkpoint_every_s=0.0),
    # The supernet search's: the whole Fashion-MNIST training split at 32 px, sized so that `nas search
    # --strategy supernet` (supernet, 1,000 candidates, finalists) aims at about 20 minutes on 2 cores.
    "search": SupernetPreset("search", steps=270, batch_size=128, resolution=32),
    # The same, trained over three times longer: for a machine with time or a GPU (`--supernet-preset long`).
    "long": SupernetPreset("long", steps=900, batch_size=128, resolution=32),
}


def get_supernet_preset(name: str) -> SupernetPreset:
    if name not in SUPERNET_PRESETS:
        raise NasError(f"unknown supernet preset {name!r}; choose from {', '.join(SUPERNET_PRESETS)}")
    return SUPERNET_PRESETS[name]


# --- the sandwich's architectures ---------------------------------------------------------------------


def largest_spec(space: SearchSpace) -> Spec:
    """Every stage at its largest choices: the MBConv path where offered, largest expansion, kernel, SE
    ratio, filters and layers, identity skip where offered."""
    params = {}
    for i, stage in enumerate(space.stages, start=1):
        block = "mbconv" if "mbconv" in stage.block else ("ds" if "ds" in stage.block else "conv")
        params.update({f"s{i}_block": block, f"s{i}_kernel": max(stage.kernel), f"s{i}_expand": max(stage.expand),
                       f"s{i}_se": max(stage.se_ratio), f"s{i}_filters": max(stage.filters),
                       f"s{i}_layers": max(stage.layers),
                       f"s{i}_skip": "identity" if "identity" in stage.skip else stage.skip[0]})
    return decode(space, params)


def smallest_spec(space: SearchSpace) -> Spec:
    """The fewest FLOPs per stage: smallest filters, layers, kernel, expansion and SE ratio, and of the block
    types the one that makes the network cheapest."""
    params = {}
    for i, stage in enumerate(space.stages, start=1):
        params.update({f"s{i}_block": stage.block[0], f"s{i}_kernel": min(stage.kernel),
                       f"s{i}_expand": min(stage.expand), f"s{i}_se": min(stage.se_ratio),
                       f"s{i}_filters": min(stage.filters), f"s{i}_layers": min(stage.layers),
                       f"s{i}_skip": stage.skip[0]})
    for i, stage in enumerate(space.stages, start=1):
        params[f"s{i}_block"] = min(stage.block, key=lambda b: count_flops(decode(space, {**params, f"s{i}_block": b})))
    return decode(space, params)


def random_spec_in_window(space: SearchSpace, window: tuple[float, float], rng: random.Random) -> Spec:
    """A uniformly drawn architecture whose FLOPs fall in `window` (absolute, low to high); after
    WINDOW_TRIES misses, the draw nearest to the window."""
    low, high = window
    nearest, distance = None, float("inf")
    for _ in range(WINDOW_TRIES):
        spec = sample(space, RandomChoices(rng))
        flops = count_flops(spec)
        miss = max(low - flops, flops - high, 0.0)
        if miss == 0.0:
            return spec
        if miss < distance:
            nearest, distance = spec, miss
    assert nearest is not None
    return nearest


# --- the run ----------------------------------------------------------------------------------------------


@dataclass
class SupernetRun:
    """A supernet with what its training recorded: the weights to score with are the EMA's."""

    supernet: Supernet
    preset: SupernetPreset
    identity: dict[str, Any]
    steps_done: int
    seconds: float


def _step_seed(seed: int, step: int, salt: str) -> int:
    return zlib.crc32(f"{seed}:{step}:{salt}".encode())


def _identity(space: SearchSpace, data: ProxyData, preset: SupernetPreset, window: tuple[float, float],
              seed: int) -> dict[str, Any]:
    """What a checkpoint must match to be resumed or reused: the space's choices, data, preset, window, seed."""
    stages = [asdict(stage) for stage in space.stages]
    return {"layout": SUPERNET_LAYOUT, "space": space.name, "space_stages": json.loads(json.dumps(stages)),
            "network": space.network, "data": data.name, "in_channels": data.in_channels, "num_classes": data.num_classes,
            "train_images": len(data.train_y), "preset": asdict(preset), "window": list(window), "seed": seed}


def mismatches(identity: dict[str, Any], space: SearchSpace, data_source: str) -> list[str]:
    """What a trained supernet's identity does not share with a search of `space` on `data_source` (the
    space's choices, the data set): empty when it can score that search. The supernet scores on its own
    validation split, so a search with another seed may reuse it."""
    mine = {"space": space.name, "space_stages": json.loads(json.dumps([asdict(s) for s in space.stages])),
            "network": space.network, "data_source": data_source}
    return [key for key, value in mine.items() if identity.get(key) != value]


def _decayed_groups(supernet: Supernet, weight_decay: float) -> list[dict]:
    # L2 on conv and linear weights (every parameter with more than one dimension), not BN or biases.
    params = list(supernet.parameters())
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise NasError(f"{path}: not a readable supernet checkpoint ({exc})") from None


def train_supernet(space: SearchSpace, data: ProxyData, preset: SupernetPreset, *, window: tuple[float, float],
                   seed: int = 0, folder: str | Path | None = None,
                   on_log: Callable[[dict[str, Any]], None] | None = None, log_every: int = 50,
                   stop_after: int | None = None, data_source: str | None = None,
                   device: str | torch.device | None = "cpu") -> SupernetRun:
    """Train (or resume from `folder`/supernet.pt) a supernet of `space` on `data` with `preset`.

    `window` is the FLOPs range (absolute, of the deployed network) the random sandwich members are drawn
    from. With `folder`, the checkpoint there is resumed if it matches (NasError if it was made with other
    settings) and rewritten as training goes. `stop_after` ends the run after that many steps of this call
    (for tests of the resume); `on_log` receives a dict of figures every `log_every` steps. `device`
    (nas.model.device) is where it trains; it does not define the run, so a resume may move it.
    """
    if preset.subset is not None:
        data = data.limit(preset.subset)
    identity = {**_identity(space, data, preset, window, seed), "data_source": data_source}
    target = resolve_device(device)
    torch.manual_seed(seed)
    supernet = Supernet(space, data.in_channels, data.num_classes).to(target)
    optimizer = RMSpropTF(_decayed_groups(supernet, preset.weight_decay), lr=0.0, rho=0.9, momentum=0.9, eps=1e-3)
    ema = ModelEma(supernet, compressed_decay(preset.steps, preset.ema_decay))
    start, seconds = 0, 0.0
    path = Path(folder) / CHECKPOINT_FILE if folder is not None else None
    if path is not None and path.is_file():
        checkpoint = load_checkpoint(path)
        if checkpoint.get("identity") != identity:
            raise NasError(f"{path} was trained with other settings (space, data, preset, FLOPs window or seed); "
                           "use another folder, or the same settings to resume it")
        ema.module.load_state_dict(checkpoint["ema"])
        ema.updates = checkpoint["ema_updates"]
        start, seconds = checkpoint["step"], checkpoint["seconds"]
        if start >= preset.steps:  # finished already
            return SupernetRun(ema.module.eval(), preset, identity, start, seconds)
        supernet.load_state_dict(checkpoint["supernet"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        log.info("resumed the supernet at step %d of %d from %s", start, preset.steps, path)

    train_x = resize_images(data.train_x, preset.resolution)
    mean, std = channel_stats(train_x)
    train_x, train_y, mean, std = train_x.to(target), data.train_y.to(target), mean.to(target), std.to(target)
    batch_size = min(preset.batch_size, len(train_x))
    steps_per_epoch = len(train_x) // batch_size
    schedule = compressed_schedule(preset.lr_per_256 * batch_size / 256, preset.steps)
    padding = crop_pixels(preset.crop_padding, preset.resolution)
    largest = supernet.fit(largest_spec(space), preset.resolution)
    smallest = supernet.fit(smallest_spec(space), preset.resolution)
    dropout = float(space.network["dropout"])

    def save(step: int, elapsed: float) -> None:
        if path is None:
            return
        state = {"identity": identity, "step": step, "seconds": elapsed, "ema": ema.module.state_dict(),
                 "ema_updates": ema.updates}
        if step < preset.steps:  # what a resume needs; a finished run keeps only the weights it is scored with
            state.update(supernet=supernet.state_dict(), optimizer=optimizer.state_dict())
        buffer = io.BytesIO()  # torch's file writer aborts the process on a full disk; a bytes write raises OSError
        torch.save(state, buffer)
        write_bytes_atomic(path, buffer.getvalue())

    supernet.train()
    end = preset.steps if stop_after is None else min(preset.steps, start + stop_after)
    last_save = time.monotonic()
    window_start, images, window_steps = time.perf_counter(), 0, 0
    losses = torch.zeros(2)
    for step in range(start, end):
        started = time.perf_counter()
        epoch, position = divmod(step, steps_per_epoch)
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(_step_seed(seed, epoch, "order")))
        index = order[position * batch_size:(position + 1) * batch_size]
        generator = torch.Generator().manual_seed(_step_seed(seed, step, "augment"))
        inputs = normalize(crop_flip(train_x[index.to(target)], padding, generator, preset.flip), mean, std)
        targets = train_y[index.to(target)]
        rng = random.Random(_step_seed(seed, step, "archs"))
        members = [supernet.fit(random_spec_in_window(space, window, rng), preset.resolution)
                   for _ in range(preset.random_archs)]
        lr = schedule(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        torch.manual_seed(_step_seed(seed, step, "dropout"))
        logits = supernet(inputs, largest, dropout=dropout)
        loss = F.cross_entropy(logits, targets, label_smoothing=preset.label_smoothing)
        _check_finite(loss, step)
        loss.backward()
        soft_targets = logits.detach().softmax(1) if preset.distill else None
        for member in [smallest, *members]:
            member_logits = supernet(inputs, member)
            if soft_targets is not None:
                member_loss = torch.sum(-soft_targets * F.log_softmax(member_logits, 1), 1).mean()
            else:
                member_loss = F.cross_entropy(member_logits, targets, label_smoothing=preset.label_smoothing)
            _check_finite(member_loss, step)
            member_loss.backward()
            if member is smallest:
                losses += torch.stack([loss.detach(), member_loss.detach()])
        optimizer.step()
        ema.update(supernet)
        seconds += time.perf_counter() - started
        images += len(index)
        window_steps += 1
        done = step + 1
        if on_log is not None and (done % log_every == 0 or done == end):
            on_log({"step": done, "steps": preset.steps, "loss_largest": float(losses[0]) / window_steps,
                    "loss_smallest": float(losses[1]) / window_steps, "lr": lr,
                    "images_per_s": images / (time.perf_counter() - window_start), "seconds": seconds})
            losses.zero_()
            window_start, images, window_steps = time.perf_counter(), 0, 0
        if path is not None and time.monotonic() - last_save >= preset.checkpoint_every_s and done < end:
            save(done, seconds)
            last_save = time.monotonic()
    save(end, seconds)
    return SupernetRun(ema.module.eval(), preset, identity, end, seconds)


def _check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise NasError(f"supernet training diverged: loss {loss.item()} at step {step}; "
                       "try a smaller learning rate")


def checkpoint_complete(path: Path) -> bool:
    """Whether a supernet checkpoint holds a finished training run."""
    checkpoint = load_checkpoint(path)
    return checkpoint["step"] >= checkpoint["identity"]["preset"]["steps"]


def load_supernet(folder: str | Path) -> SupernetRun:
    """A trained supernet from `folder`/supernet.pt (its EMA weights), with the identity it was trained with."""
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        raise NasError(f"no supernet checkpoint in {folder} (expected {path})")
    checkpoint = load_checkpoint(path)
    identity = checkpoint["identity"]
    if identity.get("layout") != SUPERNET_LAYOUT:
        raise NasError(f"{path} holds a supernet of an older weight layout (layout {identity.get('layout', 1)}, "
                       f"this version reads {SUPERNET_LAYOUT}): train it again")
    preset = SupernetPreset(**identity["preset"])
    if checkpoint["step"] < preset.steps:
        raise NasError(f"{path} is trained {checkpoint['step']} of {preset.steps} steps: resume its training first")
    space = _space_from_identity(identity)
    supernet = Supernet(space, identity["in_channels"], identity["num_classes"])
    supernet.load_state_dict(checkpoint["ema"])
    return SupernetRun(supernet.eval(), preset, identity, checkpoint["step"], checkpoint["seconds"])


def _space_from_identity(identity: dict[str, Any]) -> SearchSpace:
    from nas.arch.space import StageChoices

    stages = tuple(StageChoices(**{key: tuple(value) if isinstance(value, list) else value
                                   for key, value in stage.items()}) for stage in identity["space_stages"])
    return SearchSpace(name=identity["space"], description="", source="supernet checkpoint",
                       network=identity["network"], stages=stages)
