"""The proxy task: a short training run with the EfficientNet reference recipe, fast on a few CPU cores.

Recipe (reference facts, compressed to the proxy's length): RMSProp with TF semantics (decay 0.9, momentum 0.9,
eps 1e-3), a learning rate per 256 images with warmup then x0.97 staircase decay, L2 weight decay 1e-5 on
conv and linear weights, label smoothing 0.1, EMA of the weights used for evaluation, stochastic depth and
dropout as the spec says. Speed: images live in memory as uint8, augmentation is batched, the model and
its inputs are channels_last (the layout oneDNN's CPU convolutions are fastest on), and convolutions on maps
smaller than their kernel skip the taps that only see padding (`nas.model.skip_unreachable_taps`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from nas.augment import RandAugment, channel_stats, check_rand_augment, crop_flip, normalize, resize_images
from nas.data import ProxyData
from nas.ema import ModelEma, compressed_decay
from nas.errors import NasError
from nas.model import build_model, skip_unreachable_taps
from nas.optim import RMSpropTF, weight_decay_groups
from nas.schedule import compressed_schedule
from nas.spec import Spec


@dataclass(frozen=True)
class ProxyPreset:
    """Length and recipe of one proxy training run."""

    name: str
    epochs: int
    batch_size: int
    resolution: int
    subset: int | None = None  # images of the train+val pool; None = all
    lr_per_256: float = 0.004  # a quarter of the reference's 0.016 per 256 images: see the note above PRESETS
    weight_decay: float = 1e-5
    label_smoothing: float = 0.1
    ema_decay: float = 0.9999  # the reference's per-step decay; compressed to the run's length
    crop_padding: float = 0.125  # random-crop padding as a fraction of the resolution
    flip: bool = True
    # RandAugment: operations per batch (0 = off) and their magnitude (kornia's 0..30 scale). Off by default: the
    # proxy underfits already. B0 / Fashion-MNIST, 3 epochs: 80.3% val with 2 ops at magnitude 9, 86.5% without.
    # It is cheap: 2.4 ms per batch of 128 at 32x32, against ~130 ms for the training step.
    randaugment_ops: int = 0
    randaugment_magnitude: int = 9
    eval_batch_size: int = 500
    # PyTorch-convention BN momentum for the proxy. The reference's 0.01 averages over ~100 steps, far too slow
    # for runs of a few hundred steps: the running statistics would still be near their initial values.
    bn_momentum: float = 0.1
    # Weight init of the trained network (nas.model.INIT_SCHEMES). The reference's He-normal on fan-out makes
    # weights ~5x larger under BN, i.e. a ~5x smaller effective step: fine for 350 epochs, far too slow for a
    # proxy. Measured on B0, search preset: 81.4% validation with 'fan_in', 56% with 'reference'.
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


# The proxy learning rate is a quarter of the reference's 0.016 per 256 images. With the proxy's fan-in init
# (weights ~5x smaller under BN, so every step moves them further) the reference rate is too high. B0 /
# Fashion-MNIST, full data, batch 128, whole schedule compressed into 3 epochs: 75.7% val at 0.016, 86.5% at 0.004,
# 83.4% at 0.001; 0.048 broke training (39.9%). The search preset barely cares (81.2% at 0.004, 80.8% at 0.016).
PRESETS: dict[str, ProxyPreset] = {
    # A few seconds on 2 cores with a small net; for tests.
    "tiny": ProxyPreset("tiny", epochs=2, batch_size=32, resolution=16, subset=320),
    # One search trial of a B0-size net: 36,000 training images, 38-41 s for B0 on 2 quiet cores (~81% val).
    "search": ProxyPreset("search", epochs=4, batch_size=128, resolution=32, subset=10000),
    # One compound-scaling grid point (the caller multiplies the resolution by gamma).
    "scale": ProxyPreset("scale", epochs=5, batch_size=128, resolution=32, subset=20000),
    # Full training: B0 reaches the 90% Fashion-MNIST test top-1 target. On 2 quiet cores, seed 0: 90.48% test
    # (90.82% val) in 848 s at 980 img/s; seed 1: 90.62% test (91.02% val) in 850 s. 10 epochs fell just short
    # (89.95% test in 546 s). With the tap-skipping convs, seed 0 on a slower 2-core machine: 90.86% test
    # (91.08% val) in 1,320 s at 629 img/s.
    "full": ProxyPreset("full", epochs=15, batch_size=128, resolution=32),
}


def get_preset(name: str) -> ProxyPreset:
    """The preset called `name`; NasError naming the known presets otherwise."""
    if name not in PRESETS:
        raise NasError(f"unknown proxy preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"training diverged: loss {loss} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.loss = epoch, step, loss


@dataclass(frozen=True)
class EpochReport:
    """What the per-epoch callback receives. `epoch` counts from 0; accuracies are fractions."""

    epoch: int
    train_loss: float
    train_acc: float
    val_acc: float
    images_per_s: float
    seconds: float
    lr: float


@dataclass
class TrainResult:
    """Outcome of `train`: EMA-model accuracies, per-epoch history, timing, and the EMA weights."""

    spec: Spec
    val_acc: float
    test_acc: float | None
    history: list[EpochReport]
    seconds: float
    images_per_s: float
    mean: tuple[float, ...]  # input normalisation in pixel units (0..255), per channel
    std: tuple[float, ...]
    state_dict: dict[str, torch.Tensor] = field(repr=False)


def proxy_spec(spec: Spec, data: ProxyData, preset: ProxyPreset) -> Spec:
    """`spec` adapted to the data (input channels, class count) and to the preset's resolution."""
    return spec.replace(in_channels=data.in_channels, num_classes=data.num_classes, resolution=preset.resolution)


def train(spec: Spec, data: ProxyData, preset: ProxyPreset, *, seed: int = 0,
          on_epoch: Callable[[EpochReport], None] | None = None, evaluate_test: bool = False,
          progress: bool = False) -> TrainResult:
    """Train `spec` on `data` with `preset`; returns the EMA model's validation (and test) accuracy.

    Same seed, same data order and same result on the same machine. Exceptions from `on_epoch` propagate
    unchanged (a search uses that to prune). A non-finite loss raises `TrainingDiverged`.
    """
    started = time.perf_counter()
    if preset.subset is not None:
        data = data.limit(preset.subset)
    spec = proxy_spec(spec, data, preset)
    torch.manual_seed(seed)  # weight init, dropout and stochastic depth draw from the global generator
    generator = torch.Generator().manual_seed(seed)  # data order and augmentation
    model = skip_unreachable_taps(build_model(spec, init=preset.init)).to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = preset.bn_momentum

    train_x = resize_images(data.train_x, preset.resolution)
    mean, std = channel_stats(train_x)
    batch_size = min(preset.batch_size, len(train_x))
    steps_per_epoch = len(train_x) // batch_size  # drop the ragged last batch: BN and timing stay steady
    total_steps = preset.epochs * steps_per_epoch
    optimizer = RMSpropTF(weight_decay_groups(model, preset.weight_decay), lr=0.0, rho=0.9, momentum=0.9, eps=1e-3)
    schedule = compressed_schedule(preset.lr_per_256 * batch_size / 256, total_steps)
    ema = ModelEma(model, compressed_decay(total_steps, preset.ema_decay))
    padding = max(1, round(preset.crop_padding * preset.resolution))
    rand_augment = (RandAugment(preset.randaugment_ops, preset.randaugment_magnitude)
                    if preset.randaugment_ops else None)
    val_x = resize_images(data.val_x, preset.resolution)

    bar = _progress_bar(total_steps, progress)
    history: list[EpochReport] = []
    step = 0
    train_seconds = 0.0
    for epoch in range(preset.epochs):
        model.train()
        epoch_start = time.perf_counter()
        order = torch.randperm(len(train_x), generator=generator)
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.int64)
        for i in range(steps_per_epoch):
            index = order[i * batch_size:(i + 1) * batch_size]
            batch = crop_flip(train_x[index], padding, generator, preset.flip)
            inputs = normalize(rand_augment(batch) if rand_augment else batch, mean, std)
            targets = data.train_y[index]
            lr = schedule(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = model(inputs)
            loss = F.cross_entropy(logits, targets, label_smoothing=preset.label_smoothing)
            if not torch.isfinite(loss):
                bar.close()
                raise TrainingDiverged(epoch, step, loss.item())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema.update(model)
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(1) == targets).sum()
            step += 1
            if progress and (i % 10 == 9 or i == steps_per_epoch - 1):
                seen = (i + 1) * batch_size
                bar.set_postfix(epoch=epoch, loss=f"{loss_sum.item() / (i + 1):.3f}",
                                acc=f"{correct.item() / seen:.3f}",
                                img_s=f"{seen / (time.perf_counter() - epoch_start):.0f}", refresh=False)
            bar.update(1)
        epoch_train_seconds = time.perf_counter() - epoch_start
        train_seconds += epoch_train_seconds
        val_acc = evaluate(ema.module, val_x, data.val_y, mean, std, preset.eval_batch_size)
        report = EpochReport(epoch=epoch, train_loss=loss_sum.item() / steps_per_epoch,
                             train_acc=correct.item() / (steps_per_epoch * batch_size), val_acc=val_acc,
                             images_per_s=steps_per_epoch * batch_size / epoch_train_seconds,
                             seconds=time.perf_counter() - epoch_start, lr=lr)
        history.append(report)
        if progress:
            bar.write(f"epoch {epoch + 1}/{preset.epochs}: loss {report.train_loss:.4f} "
                      f"train acc {report.train_acc:.4f} val acc {val_acc:.4f} ({report.images_per_s:.0f} img/s)")
        if on_epoch is not None:
            try:
                on_epoch(report)
            except BaseException:
                bar.close()
                raise
    bar.close()

    test_acc = None
    if evaluate_test and data.test_x is not None:
        test_x = resize_images(data.test_x, preset.resolution)
        test_acc = evaluate(ema.module, test_x, data.test_y, mean, std, preset.eval_batch_size)
    state_dict = {k: v.detach().contiguous().clone() for k, v in ema.module.state_dict().items()}
    return TrainResult(spec=spec, val_acc=history[-1].val_acc, test_acc=test_acc, history=history,
                       seconds=time.perf_counter() - started,
                       images_per_s=total_steps * batch_size / train_seconds,
                       mean=tuple(mean.tolist()), std=tuple(std.tolist()), state_dict=state_dict)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor,
             std: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy (fraction) of `model` in eval mode on uint8 `images` already at the model's resolution."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(normalize(images[start:start + batch_size], mean, std))
        correct += int((logits.argmax(1) == labels[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(images)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="step", dynamic_ncols=True, leave=False)
