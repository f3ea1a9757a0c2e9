"""The proxy trainer: a short training run with the EfficientNet reference recipe, fast on a few CPU cores.

Recipe (reference facts, compressed to the run's length): RMSProp with TF semantics (decay 0.9, momentum 0.9,
eps 1e-3), a learning rate per 256 images with warmup then x0.97 staircase decay, L2 weight decay 1e-5 on
conv and linear weights, label smoothing 0.1, EMA of the weights used for evaluation, stochastic depth and
dropout as the spec says. Speed: images live in memory as uint8, augmentation is batched, the model and
its inputs are channels_last (the layout oneDNN's CPU convolutions are fastest on), and convolutions on maps
smaller than their kernel skip the taps that only see padding (`nas.model.builder.skip_unreachable_taps`);
`bench/bench_train_speed.py` measures what that buys.

`train()` reads as its steps: `_set_up` (model, optimizer, schedule, EMA, the data at the run's resolution),
then per epoch `_train_epoch` and `evaluate`, then the test set when asked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.spec import Spec
from nas.model.builder import build_model, skip_unreachable_taps
from nas.proxy.augment import (
    RandAugment,
    channel_stats,
    crop_flip,
    normalize,
    resize_images,
)
from nas.proxy.data import ProxyData
from nas.proxy.ema import ModelEma, compressed_decay
from nas.proxy.optim import RMSpropTF, weight_decay_groups
from nas.proxy.presets import ProxyPreset
from nas.proxy.schedule import LrSchedule, compressed_schedule


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


@dataclass
class _Run:
    """Everything one training run holds: the network and its EMA, the optimizer and schedule, the data at
    the run's resolution with its normalisation, and the step count."""

    spec: Spec
    model: nn.Module
    ema: ModelEma
    optimizer: torch.optim.Optimizer
    schedule: LrSchedule
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    batch_size: int
    steps_per_epoch: int
    padding: int
    generator: torch.Generator
    rand_augment: RandAugment | None
    total_steps: int
    step: int = 0


class _EpochStats(NamedTuple):
    """What one pass over the training images measured."""

    loss: float
    accuracy: float
    seconds: float
    images: int
    lr: float


def _set_up(spec: Spec, data: ProxyData, preset: ProxyPreset, seed: int) -> _Run:
    """Seed, build the channels-last network with the preset's init and BN momentum, and set up the recipe."""
    spec = proxy_spec(spec, data, preset)
    torch.manual_seed(seed)  # weight init, dropout and stochastic depth draw from the global generator
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
    return _Run(
        spec=spec, model=model, ema=ModelEma(model, compressed_decay(total_steps, preset.ema_decay)),
        optimizer=optimizer, schedule=compressed_schedule(preset.lr_per_256 * batch_size / 256, total_steps),
        train_x=train_x, train_y=data.train_y, val_x=resize_images(data.val_x, preset.resolution),
        mean=mean, std=std, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
        padding=max(1, round(preset.crop_padding * preset.resolution)),
        generator=torch.Generator().manual_seed(seed),  # data order and augmentation
        rand_augment=RandAugment(preset.randaugment_ops, preset.randaugment_magnitude)
        if preset.randaugment_ops else None,
        total_steps=total_steps,
    )


def _train_epoch(run: _Run, preset: ProxyPreset, epoch: int, bar, progress: bool) -> _EpochStats:
    """One pass over the training images in a seeded order."""
    run.model.train()
    started = time.perf_counter()
    order = torch.randperm(len(run.train_x), generator=run.generator)
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.int64)
    lr = 0.0
    for i in range(run.steps_per_epoch):
        index = order[i * run.batch_size:(i + 1) * run.batch_size]
        batch = crop_flip(run.train_x[index], run.padding, run.generator, preset.flip)
        inputs = normalize(run.rand_augment(batch) if run.rand_augment else batch, run.mean, run.std)
        targets = run.train_y[index]
        lr = run.schedule(run.step)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        logits = run.model(inputs)
        loss = F.cross_entropy(logits, targets, label_smoothing=preset.label_smoothing)
        if not torch.isfinite(loss):
            raise TrainingDiverged(epoch, run.step, loss.item())
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.ema.update(run.model)
        loss_sum += loss.detach()
        correct += (logits.detach().argmax(1) == targets).sum()
        run.step += 1
        if progress and (i % 10 == 9 or i == run.steps_per_epoch - 1):
            seen = (i + 1) * run.batch_size
            bar.set_postfix(epoch=epoch, loss=f"{loss_sum.item() / (i + 1):.3f}", acc=f"{correct.item() / seen:.3f}",
                            img_s=f"{seen / (time.perf_counter() - started):.0f}", refresh=False)
        bar.update(1)
    images = run.steps_per_epoch * run.batch_size
    return _EpochStats(loss_sum.item() / run.steps_per_epoch, correct.item() / images,
                       time.perf_counter() - started, images, lr)


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
    run = _set_up(spec, data, preset, seed)
    history: list[EpochReport] = []
    train_seconds = 0.0
    with _progress_bar(run.total_steps, progress) as bar:
        for epoch in range(preset.epochs):
            epoch_started = time.perf_counter()
            stats = _train_epoch(run, preset, epoch, bar, progress)
            train_seconds += stats.seconds
            val_acc = evaluate(run.ema.module, run.val_x, data.val_y, run.mean, run.std, preset.eval_batch_size)
            report = EpochReport(epoch=epoch, train_loss=stats.loss, train_acc=stats.accuracy, val_acc=val_acc,
                                 images_per_s=stats.images / stats.seconds,
                                 seconds=time.perf_counter() - epoch_started, lr=stats.lr)
            history.append(report)
            if progress:
                bar.write(f"epoch {epoch + 1}/{preset.epochs}: loss {report.train_loss:.4f} "
                          f"train acc {report.train_acc:.4f} val acc {val_acc:.4f} ({report.images_per_s:.0f} img/s)")
            if on_epoch is not None:
                on_epoch(report)
    test_acc = None
    if evaluate_test and data.test_x is not None:
        test_x = resize_images(data.test_x, preset.resolution)
        test_acc = evaluate(run.ema.module, test_x, data.test_y, run.mean, run.std, preset.eval_batch_size)
    state_dict = {k: v.detach().contiguous().clone() for k, v in run.ema.module.state_dict().items()}
    return TrainResult(spec=run.spec, val_acc=history[-1].val_acc, test_acc=test_acc, history=history,
                       seconds=time.perf_counter() - started,
                       images_per_s=run.total_steps * run.batch_size / train_seconds,
                       mean=tuple(run.mean.tolist()), std=tuple(run.std.tolist()), state_dict=state_dict)


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


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator:
    from tqdm import tqdm

    bar = tqdm(total=total, disable=not enabled, unit="step", dynamic_ncols=True, leave=False)
    try:
        yield bar
    finally:
        bar.close()
