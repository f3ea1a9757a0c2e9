"""The proxy trainer: a short training run with the EfficientNet reference recipe, fast on a few CPU cores,
and the same loop on a GPU, in several processes, and on data streamed from disk.

Recipe (reference facts, compressed to the run's length): RMSProp with TF semantics (decay 0.9, momentum 0.9,
eps 1e-3), a learning rate per 256 images with warmup then x0.97 staircase decay, L2 weight decay 1e-5 on
conv and linear weights, label smoothing 0.1, EMA of the weights used for evaluation, stochastic depth and
dropout as the spec says. Speed: images live in memory as uint8 (or stream through DataLoader workers,
`nas.proxy.batches`), augmentation is batched, the model and its inputs are channels_last (the layout
oneDNN's CPU convolutions and cuDNN's tensor cores are fastest on), and convolutions on maps smaller than
their kernel skip the taps that only see padding (`nas.model.builder.skip_unreachable_taps`);
`bench/bench_train_speed.py` measures what that buys. On a GPU the forward pass runs under autocast
(`--amp`, bfloat16 by default) and `compile=True` hands the network to torch.compile.

Distributed: inside a process group (torchrun; `nas.proxy.distributed`) the network is wrapped in
DistributedDataParallel, each process trains on its share of every batch of `batch_size` images, the
learning rate follows the global batch (per 256 images), and rank 0 alone reports and writes.

`train()` reads as its steps: `_set_up` (device, model, optimizer, schedule, EMA, batches), `_resume` from
a saved state when there is one, then per epoch `_train_epoch`, `_calibrate` (the EMA network's BN
statistics), `_accuracy` on the validation images and `_save_state`, then the test set when asked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.spec import Spec
from nas.errors import NasError
from nas.model.batchnorm import recalibrate_batchnorm
from nas.model.builder import build_model, skip_unreachable_taps
from nas.model.device import (
    amp_name,
    autocast,
    grad_scaler,
    resolve_amp,
    resolve_device,
)
from nas.proxy import distributed
from nas.proxy.augment import RandAugment, crop_pixels, normalize
from nas.proxy.batches import batch_source, default_loader_workers
from nas.proxy.checkpoint import load_train_state, save_train_state
from nas.proxy.data import ProxyData
from nas.proxy.ema import ModelEma, compressed_decay
from nas.proxy.optim import RMSpropTF, weight_decay_groups
from nas.proxy.presets import ProxyPreset
from nas.proxy.schedule import LrSchedule, compressed_schedule
from nas.proxy.stream import StreamingData
from nas.proxy.transfer import transfer_weights

STATE_EVERY_STEPS = 1000  # within a long epoch, the training state is also saved this often
STATE_FORMAT = 1

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"training diverged: loss {loss} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.loss = epoch, step, loss


@dataclass(frozen=True)
class EpochReport:
    """What the per-epoch callback receives. `epoch` counts from 0; accuracies are fractions; `steps` is the
    run's optimizer steps so far (an epoch is one pass over the training images, the last one maybe partial)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_acc: float
    images_per_s: float
    seconds: float
    lr: float
    steps: int = 0


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
    device: str = "cpu"
    amp: str = "off"
    world_size: int = 1
    data_path: str = "memory"  # 'memory' or 'stream'
    steps: int = 0
    resumed_at_step: int | None = None  # where a saved state took the run up, if it did
    transfer_notes: tuple[str, ...] = ()  # what `init_from` could not take as it was
    corrupt_skipped: tuple[str, ...] = ()  # streamed files left out as undecodable


def proxy_spec(spec: Spec, data: ProxyData | StreamingData, preset: ProxyPreset) -> Spec:
    """`spec` adapted to the data (input channels, class count) and to the preset's resolution."""
    return spec.replace(in_channels=data.in_channels, num_classes=data.num_classes, resolution=preset.resolution)


@dataclass
class _Run:
    """Everything one training run holds: where it runs, the network (and the module that trains it:
    DistributedDataParallel and/or compiled), its EMA, the optimizer and schedule, the batches, the step."""

    spec: Spec
    model: nn.Module
    forward: nn.Module
    ema: ModelEma
    optimizer: torch.optim.Optimizer
    schedule: LrSchedule
    source: Any  # a batch source of nas.proxy.batches
    device: torch.device
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    place: distributed.Distributed | None
    batch_size: int  # per process
    total_steps: int
    epochs: int
    rand_augment: RandAugment | None
    transfer_notes: list[str]
    step: int = 0
    history: list[EpochReport] = field(default_factory=list)
    # This process's running sums over the epoch under way (saved with a state saved inside an epoch).
    epoch_loss: torch.Tensor | None = None
    epoch_correct: torch.Tensor | None = None

    @property
    def is_main(self) -> bool:
        return self.place is None or self.place.is_main

    @property
    def world(self) -> int:
        return 1 if self.place is None else self.place.world_size

    def steps_in(self, epoch: int) -> int:
        """Optimizer steps of `epoch` (a whole pass, or what is left of the run)."""
        return min(self.source.steps_per_epoch, self.total_steps - epoch * self.source.steps_per_epoch)


class _EpochStats(NamedTuple):
    """What one pass over the training images measured."""

    loss: float
    accuracy: float
    seconds: float
    images: int
    lr: float


def _set_up(spec: Spec, data: ProxyData | StreamingData, preset: ProxyPreset, seed: int, device: str | None,
            amp: str | None, compile: bool | str, init_from: dict[str, torch.Tensor] | None,
            loader_workers: int | None) -> _Run:
    """Resolve the device, build the channels-last network with the preset's init and BN momentum (from
    `init_from` when given), and set up the recipe and the batches."""
    place = distributed.current()
    world, rank = (1, 0) if place is None else (place.world_size, place.rank)
    target = resolve_device(device)
    if place is not None and target.type == "cuda":
        target = torch.device("cuda", place.local_rank)
    dtype = resolve_amp(amp, target)
    spec = proxy_spec(spec, data, preset)
    torch.manual_seed(seed)  # weight init, dropout and stochastic depth draw from the global generator
    model = skip_unreachable_taps(build_model(spec, init=preset.init))
    notes = [] if init_from is None else transfer_weights(model, init_from)
    model = model.to(device=target, memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = preset.bn_momentum
    if world > 1:  # same initial weights everywhere (DDP checks), but each process its own dropout masks
        torch.manual_seed(int(np.random.SeedSequence([seed, rank]).generate_state(1)[0]))
    if isinstance(data, ProxyData) and data.name == "folder" and data.image_size < preset.resolution:
        log.warning("the folder's images were decoded at %d px and are upsampled to %d px: load them with "
                    "image_size=%d", data.image_size, preset.resolution, preset.resolution)
    batch_size = min(preset.batch_size, len(data.train_y) // world)
    if batch_size < 1:
        raise NasError(f"{len(data.train_y)} training images are too few for {world} processes")
    source = batch_source(data, resolution=preset.resolution, batch_size=batch_size,
                          padding=crop_pixels(preset.crop_padding, preset.resolution), flip=preset.flip,
                          seed=seed, rank=rank, world=world, device=target, eval_batch_size=preset.eval_batch_size,
                          loader_workers=loader_workers if loader_workers is not None else
                          default_loader_workers(1 if place is None else place.local_world_size))
    if source.steps_per_epoch < 1:
        source.close()
        raise NasError(f"{len(data.train_y)} training images make no whole batch of {batch_size} x {world}")
    source.mean, source.std = source.mean.to(target), source.std.to(target)
    global_batch = batch_size * world
    total_steps = preset.total_steps(source.steps_per_epoch, global_batch)
    forward: nn.Module = model
    if place is not None:
        # A depthwise kernel (C, 1, k, k) has two equally valid channels-last strides (the size-1 dimension's is
        # free) and its gradient arrives in either, by conv path; DDP copies it into its bucket either way.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        forward = nn.parallel.DistributedDataParallel(model, device_ids=[target.index] if target.type == "cuda"
                                                      else None)
    if compile:
        forward = torch.compile(forward, backend="inductor" if compile is True else compile)
    optimizer = RMSpropTF(weight_decay_groups(model, preset.weight_decay), lr=0.0, rho=0.9, momentum=0.9, eps=1e-3)
    return _Run(
        spec=spec, model=model, forward=forward, ema=ModelEma(model, compressed_decay(total_steps, preset.ema_decay)),
        optimizer=optimizer, schedule=compressed_schedule(preset.lr_per_256 * global_batch / 256, total_steps),
        source=source, device=target, dtype=dtype, scaler=grad_scaler(target, dtype), place=place,
        batch_size=batch_size, total_steps=total_steps,
        epochs=math.ceil(total_steps / source.steps_per_epoch),
        rand_augment=RandAugment(preset.randaugment_ops, preset.randaugment_magnitude)
        if preset.randaugment_ops else None,
        transfer_notes=notes,
    )


def _loss_is_finite(run: _Run, loss: torch.Tensor) -> bool:
    """Whether the step's loss is finite -- on every process, so that all of them stop together."""
    if run.place is None:
        return bool(torch.isfinite(loss))
    return bool(torch.isfinite(distributed.all_sum(loss.detach().clone())))


def _train_epoch(run: _Run, preset: ProxyPreset, epoch: int, start: int, bar, progress: bool,
                 state_path: Path | None, identity: dict[str, Any]) -> _EpochStats:
    """One pass over this process's share of the training images in a seeded order (from step `start` of it)."""
    run.forward.train()
    started = time.perf_counter()
    steps = run.steps_in(epoch) - start
    if start == 0 or run.epoch_loss is None:
        run.epoch_loss = torch.zeros((), device=run.device)
        run.epoch_correct = torch.zeros((), dtype=torch.int64, device=run.device)
    loss_sum, correct = run.epoch_loss, run.epoch_correct  # added to in place
    # A finiteness check reads the loss back, which stalls an asynchronous device: there, every 10th step.
    check_every = 1 if run.device.type == "cpu" else 10
    lr = 0.0
    for i, (batch, targets) in enumerate(run.source.epoch(epoch, start, steps)):
        inputs = normalize(run.rand_augment(batch) if run.rand_augment else batch, run.source.mean, run.source.std)
        lr = run.schedule(run.step)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        with autocast(run.device, run.dtype):
            logits = run.forward(inputs)
            loss = F.cross_entropy(logits, targets, label_smoothing=preset.label_smoothing)
        if run.step % check_every == 0 and not _loss_is_finite(run, loss):
            raise TrainingDiverged(epoch, run.step, loss.item())
        run.optimizer.zero_grad(set_to_none=True)
        if run.scaler is None:
            loss.backward()
            run.optimizer.step()
        else:
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
        run.ema.update(run.model)
        loss_sum += loss.detach()
        correct += (logits.detach().argmax(1) == targets).sum()
        run.step += 1
        if progress and (i % 10 == 9 or i == steps - 1):
            seen = (start + i + 1) * run.batch_size
            bar.set_postfix(epoch=epoch, loss=f"{loss_sum.item() / (start + i + 1):.3f}",
                            acc=f"{correct.item() / seen:.3f}",
                            img_s=f"{(i + 1) * run.batch_size * run.world / (time.perf_counter() - started):.0f}",
                            refresh=False)
        bar.update(1)
        if state_path is not None and run.step % STATE_EVERY_STEPS == 0 and i < steps - 1:
            _save_state(run, state_path, identity)
    seconds = time.perf_counter() - started
    totals = torch.stack([loss_sum.float(), correct.float()])
    if run.place is not None:
        distributed.all_sum(totals)
    epoch_steps = start + steps
    images = epoch_steps * run.batch_size * run.world
    return _EpochStats(totals[0].item() / (epoch_steps * run.world), totals[1].item() / images, seconds,
                       steps * run.batch_size * run.world, lr)


def train(spec: Spec, data: ProxyData | StreamingData, preset: ProxyPreset, *, seed: int = 0,
          on_epoch: Callable[[EpochReport], None] | None = None, evaluate_test: bool = False,
          progress: bool = False, device: str | torch.device | None = None, amp: str | None = None,
          compile: bool | str = False, init_from: dict[str, torch.Tensor] | None = None,
          state_path: str | Path | None = None, loader_workers: int | None = None) -> TrainResult:
    """Train `spec` on `data` with `preset`; returns the EMA model's validation (and test) accuracy.

    Same seed, same data order and same result on the same machine. Exceptions from `on_epoch` propagate
    unchanged (a search uses that to prune). A non-finite loss raises `TrainingDiverged`.

    `device` is auto (CUDA if there is one, else the CPU), cpu, cuda, cuda:N or mps; `amp` is bf16, fp16 or
    off (default: on for CUDA only); `compile` runs the network through torch.compile (True: its default
    inductor backend; a string names another backend). `init_from` is a
    state dict of trained weights to start from (nas.proxy.transfer: the classifier and stem are adapted
    to the data). With `state_path` the run saves its state there after every epoch (and every
    STATE_EVERY_STEPS steps) and, when the file already holds a state of the same run, resumes from it.
    `loader_workers` is the number of DataLoader processes that decode a streamed data set.
    Inside a torch.distributed process group the run is distributed (see the module docstring); only
    rank 0 calls `on_epoch` and shows progress.
    """
    started = time.perf_counter()
    if preset.subset is not None:
        data = data.limit(preset.subset)
    run = _set_up(spec, data, preset, seed, device, amp, compile, init_from, loader_workers)
    state_path = None if state_path is None else Path(state_path)
    identity = _identity(run, data, preset, seed)
    try:
        resumed_at = _resume(run, state_path, identity) if state_path is not None and state_path.is_file() else None
        train_images, train_seconds = 0, 0.0
        with _progress_bar(run.total_steps, progress and run.is_main, run.step) as bar:
            for epoch in range(run.step // run.source.steps_per_epoch if run.step < run.total_steps else run.epochs,
                               run.epochs):
                epoch_started = time.perf_counter()
                start = run.step - epoch * run.source.steps_per_epoch
                stats = _train_epoch(run, preset, epoch, start, bar, progress and run.is_main, state_path, identity)
                train_images += stats.images
                train_seconds += stats.seconds
                _calibrate(run, preset.bn_calibration)
                val_acc = _accuracy(run, "val")
                report = EpochReport(epoch=epoch, train_loss=stats.loss, train_acc=stats.accuracy, val_acc=val_acc,
                                     images_per_s=stats.images / stats.seconds,
                                     seconds=time.perf_counter() - epoch_started, lr=stats.lr, steps=run.step)
                run.history.append(report)
                if state_path is not None:
                    _save_state(run, state_path, identity)
                if progress and run.is_main:
                    bar.write(f"epoch {epoch + 1}/{run.epochs}: loss {report.train_loss:.4f} "
                              f"train acc {report.train_acc:.4f} val acc {val_acc:.4f} "
                              f"({report.images_per_s:.0f} img/s)")
                if on_epoch is not None and run.is_main:
                    on_epoch(report)
        test_acc = _accuracy(run, "test") if evaluate_test and data.test_y is not None else None
    finally:
        run.source.close()
    state_dict = {k: v.detach().cpu().contiguous().clone() for k, v in run.ema.module.state_dict().items()}
    images_per_s = train_images / train_seconds if train_seconds else run.history[-1].images_per_s
    return TrainResult(spec=run.spec, val_acc=run.history[-1].val_acc, test_acc=test_acc, history=run.history,
                       seconds=time.perf_counter() - started, images_per_s=images_per_s,
                       mean=tuple(run.source.mean.tolist()), std=tuple(run.source.std.tolist()),
                       state_dict=state_dict, device=str(run.device), amp=amp_name(run.dtype), world_size=run.world,
                       data_path="stream" if isinstance(data, StreamingData) else "memory", steps=run.step,
                       resumed_at_step=resumed_at, transfer_notes=tuple(run.transfer_notes),
                       corrupt_skipped=tuple(getattr(run.source, "skipped", ())))


# --- evaluation --------------------------------------------------------------------------------------


@torch.no_grad()
def _count_correct(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], mean: torch.Tensor,
                   std: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """(correct, total) of `model` in eval mode over uint8 batches already at its resolution."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(2, dtype=torch.int64, device=device)
    for images, labels in batches:
        with autocast(device, dtype):
            logits = model(normalize(images.to(device), mean, std))
        counts[0] += (logits.argmax(1) == labels.to(device)).sum()
        counts[1] += len(labels)
    model.train(was_training)
    return counts


@torch.no_grad()
def _calibrate(run: _Run, images: int) -> None:
    """Recompute the EMA network's BatchNorm statistics on the first `images` training images (unaugmented)."""
    if images:
        batches = run.source.calibration_batches(images)
        with autocast(run.device, run.dtype):  # the precision the evaluation runs in
            recalibrate_batchnorm(run.ema.module, (normalize(b, run.source.mean, run.source.std) for b in batches))


def _accuracy(run: _Run, split: str) -> float:
    """The EMA network's top-1 accuracy on the validation or test images (all processes' shares)."""
    counts = _count_correct(run.ema.module, run.source.eval_batches(split), run.source.mean, run.source.std,
                            run.device, run.dtype)
    if run.place is not None:
        distributed.all_sum(counts)
    return counts[0].item() / max(1, counts[1].item())


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor,
             std: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy (fraction) of `model` in eval mode on uint8 `images` already at the model's resolution,
    on the device the model is on."""
    device = next(model.parameters()).device
    batches = ((images[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(images), batch_size))
    counts = _count_correct(model, batches, mean.to(device), std.to(device), device)
    return counts[0].item() / len(images)


# --- the resumable state -----------------------------------------------------------------------------


def _identity(run: _Run, data: ProxyData | StreamingData, preset: ProxyPreset, seed: int) -> dict[str, Any]:
    """What a saved state must match to be resumed: the network, recipe, seed, data and process count."""
    identity = {"spec": run.spec.to_dict(), "preset": asdict(preset), "seed": seed, "world_size": run.world,
                "data": [data.name, len(data.train_y), len(data.val_y), data.num_classes]}
    return json.loads(json.dumps(identity))  # as it reads back from the file


def _rank_state(run: _Run) -> dict[str, torch.Tensor]:
    """This process's random-generator states (torch's global one for dropout and stochastic depth, the
    device's, the batch source's) and its running sums over the epoch under way."""
    state = {"global": torch.get_rng_state(), **{f"source.{k}": v for k, v in run.source.state().items()}}
    if run.epoch_loss is not None:
        state.update(epoch_loss=run.epoch_loss.cpu(), epoch_correct=run.epoch_correct.cpu())
    if run.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(run.device)
    return state


def _save_state(run: _Run, path: Path, identity: dict[str, Any]) -> None:
    """Rank 0 writes the weights, EMA, optimizer, scaler and every process's generator states, atomically."""
    rank_states = [_rank_state(run)] if run.place is None else distributed.gather_to_main(_rank_state(run), run.place)
    if run.is_main:
        tensors = {f"model.{k}": v for k, v in run.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in run.ema.module.state_dict().items()})
        optimizer = run.optimizer.state_dict()
        for index, buffers in optimizer["state"].items():
            tensors.update({f"optim.{index}.{name}": value for name, value in buffers.items()})
        for rank, states in enumerate(rank_states):
            tensors.update({f"rng.{rank}.{name}": value for name, value in states.items()})
        meta = {"format": STATE_FORMAT, "identity": identity, "step": run.step, "ema_updates": run.ema.updates,
                "param_groups": optimizer["param_groups"],
                "scaler": None if run.scaler is None else run.scaler.state_dict(),
                "history": [asdict(report) for report in run.history]}
        save_train_state(path, tensors, meta)
    if run.place is not None:
        distributed.barrier()


def _resume(run: _Run, path: Path, identity: dict[str, Any]) -> int:
    """Load a saved state into the run; returns the step it resumes at. A state of another run is a NasError."""
    tensors, meta = load_train_state(path)
    if meta.get("format") != STATE_FORMAT or meta.get("identity") != identity:
        stored = meta.get("identity") or {}
        changed = [key for key in identity if stored.get(key) != identity[key]]
        raise NasError(f"{path} holds the state of another run (different {', '.join(changed) or 'format'}); "
                       "delete it or train into another folder")
    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    run.model.load_state_dict(part("model."))
    run.ema.module.load_state_dict(part("ema."))
    run.ema.updates = meta["ema_updates"]
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in part("optim.").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    run.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    for group in run.optimizer.param_groups:  # keep the buffers in the parameters' (channels-last) layout
        for p in group["params"]:
            for name, value in run.optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    run.optimizer.state[p][name] = torch.empty_like(p).copy_(value)
    if run.scaler is not None and meta["scaler"]:
        run.scaler.load_state_dict(meta["scaler"])
    rank = 0 if run.place is None else run.place.rank
    mine = part(f"rng.{rank}.")
    torch.set_rng_state(mine["global"])
    if run.device.type == "cuda" and "cuda" in mine:
        torch.cuda.set_rng_state(mine["cuda"], run.device)
    run.source.load_state({k[len("source."):]: v for k, v in mine.items() if k.startswith("source.")})
    if "epoch_loss" in mine:
        run.epoch_loss, run.epoch_correct = mine["epoch_loss"].to(run.device), mine["epoch_correct"].to(run.device)
    run.step = meta["step"]
    run.history = [EpochReport(**report) for report in meta["history"]]
    if run.is_main:
        log.info("resumed from %s at step %d of %d", path, run.step, run.total_steps)
    return run.step


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool, initial: int = 0) -> Iterator:
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True, leave=False)
    try:
        yield bar
    finally:
        bar.close()
