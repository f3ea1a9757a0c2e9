"""Training speed of B0 at the default proxy setting: the trainer against a plain eager NCHW loop.

Both run the same model, optimizer, loss, EMA and augmented batches of the same data, alternating in one
process so that load from other jobs hits both alike; the figure is the ratio of median images/s.
The trainer's path differs in its two speed-ups only: memory format (channels_last model and inputs,
batched uint8 augmentation that writes NHWC directly) and convolutions on maps smaller than their kernel
skipping the taps that only see padding (`nas.model.builder.skip_unreachable_taps`; the plain loop runs the modules
as `build_model` makes them). Each measurement trains a fresh model for two epochs and times the second, so that
one-off costs of a new model (oneDNN primitive creation, allocator growth), which a real run of hundreds of
steps does not notice, cannot colour a 20-step epoch. The first epoch's figures are printed beside it. Usage:

    python bench/bench_train_speed.py [--preset search] [--images 2560] [--rounds 3] [--threads N] [--randaugment OPS]

--randaugment adds a third figure per round: the trainer with RandAugment on, to show what it costs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from nas.arch.efficientnet import efficientnet
from nas.model.builder import build_model
from nas.proxy.augment import channel_stats, crop_flip, crop_pixels, normalize, resize_images
from nas.proxy.data import load_dataset
from nas.proxy.ema import ModelEma, compressed_decay
from nas.proxy.optim import RMSpropTF, weight_decay_groups
from nas.proxy.presets import ProxyPreset, get_preset
from nas.proxy.trainer import proxy_spec, train


def as_nchw(images: torch.Tensor) -> torch.Tensor:
    """A copy of `images` with NCHW strides.

    `.contiguous()` is not enough: with one channel (Fashion-MNIST) the NHWC strides (HW, 1, W, 1) already count
    as contiguous, so it returns the tensor unchanged, and the convolutions then pick channels_last from those
    strides -- a "plain" loop that is not NCHW at all, and as fast as the channels_last one.
    """
    return torch.empty(images.shape, dtype=images.dtype).copy_(images)


def plain_eager_nchw(data, preset: ProxyPreset, seed: int) -> list[float]:
    """`preset.epochs` epochs of the textbook loop (NCHW model and batches); training images/s per epoch."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model(proxy_spec(efficientnet("b0"), data, preset), init=preset.init).train()
    train_x = resize_images(data.train_x, preset.resolution)
    mean, std = channel_stats(train_x)
    steps = len(train_x) // preset.batch_size
    optimizer = RMSpropTF(weight_decay_groups(model, preset.weight_decay), lr=preset.lr_per_256 / 2, eps=1e-3)
    ema = ModelEma(model, compressed_decay(steps))
    padding = crop_pixels(preset.crop_padding, preset.resolution)
    rates = []
    for _ in range(preset.epochs):
        order = torch.randperm(len(train_x), generator=generator)
        start = time.perf_counter()
        for i in range(steps):
            index = order[i * preset.batch_size:(i + 1) * preset.batch_size]
            inputs = as_nchw(normalize(crop_flip(train_x[index], padding, generator), mean, std))
            loss = F.cross_entropy(model(inputs), data.train_y[index], label_smoothing=preset.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema.update(model)
        rates.append(steps * preset.batch_size / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="search")
    parser.add_argument("--images", type=int, default=2560, help="training images per measured epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--randaugment", type=int, default=0, metavar="OPS",
                        help="also time the trainer with RandAugment of OPS operations")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = get_preset(args.preset)
    preset = base.with_changes(epochs=2, subset=round(args.images / (1 - 0.1)))
    data = load_dataset("fashion-mnist", seed=0).limit(preset.subset)
    print(f"B0 on Fashion-MNIST, preset {base.name}: {preset.resolution}x{preset.resolution}, batch "
          f"{preset.batch_size}, {len(data.train_y)} images per epoch, {torch.get_num_threads()} threads; "
          f"second epoch timed (first epoch in brackets)")
    trainer, plain, augmented = [], [], []
    first_trainer, first_plain = [], []
    plain_eager_nchw(data.limit(preset.batch_size * 3), preset, 0)  # warm up allocator and kernels
    for r in range(args.rounds):
        trainer_rates = [report.images_per_s for report in train(efficientnet("b0"), data, preset, seed=r).history]
        plain_rates = plain_eager_nchw(data, preset, r)
        trainer.append(trainer_rates[-1])
        first_trainer.append(trainer_rates[0])
        plain.append(plain_rates[-1])
        first_plain.append(plain_rates[0])
        line = (f"round {r + 1}: trainer {trainer[-1]:.0f} ({first_trainer[-1]:.0f}) img/s, "
                f"plain eager NCHW {plain[-1]:.0f} ({first_plain[-1]:.0f}) img/s")
        if args.randaugment:
            with_ra = preset.with_changes(randaugment_ops=args.randaugment)
            augmented.append(train(efficientnet("b0"), data, with_ra, seed=r).history[-1].images_per_s)
            line += f", trainer + RandAugment({args.randaugment}) {augmented[-1]:.0f} img/s"
        print(line, flush=True)
    fast, slow = statistics.median(trainer), statistics.median(plain)
    print(f"median: trainer {fast:.0f} img/s, plain eager NCHW {slow:.0f} img/s, speed-up {fast / slow:.2f}x "
          f"(first epoch, one-off costs included: "
          f"{statistics.median(first_trainer) / statistics.median(first_plain):.2f}x)")
    if augmented:
        print(f"median: trainer + RandAugment {statistics.median(augmented):.0f} img/s "
              f"({statistics.median(augmented) / fast:.2f}x the trainer without)")


if __name__ == "__main__":
    main()
