"""Training speed of a folder data set streamed from disk (DataLoader workers decode, resize and augment each
batch) against the same folder decoded into memory, with B0 at the `search` preset's resolution.

The bench writes a folder of JPEG images (Fashion-MNIST pictures upscaled to 64 px and coloured, so that
every batch pays a real decode and resize), then trains B0 on it in alternating rounds: in memory, then
streamed with each worker count. Each measurement trains two epochs and reports the second's images/s
(the first pays the workers' start and one-off costs of a new model). Usage:

    python bench/bench_streaming.py [--images 3000] [--workers 1,2] [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nas.arch.efficientnet import efficientnet
from nas.proxy.data import load_dataset
from nas.proxy.presets import get_preset
from nas.proxy.trainer import train


def write_folder(root: Path, images: int, size: int = 64) -> Path:
    """root/<class>/<i>.jpg: Fashion-MNIST pictures at `size` px, tinted per image (RGB JPEGs)."""
    source = load_dataset("fashion-mnist", seed=0)
    rng = np.random.default_rng(0)
    for i in range(images):
        grey = Image.fromarray(source.train_x[i, 0].numpy()).resize((size, size), Image.BILINEAR)
        tint = rng.uniform(0.5, 1.0, 3)
        rgb = (np.asarray(grey, dtype=np.float32)[:, :, None] * tint).astype(np.uint8)
        folder = root / f"class{int(source.train_y[i])}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--workers", default="1,2", help="DataLoader worker counts to time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads of the training process")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset("search").with_changes(epochs=2, subset=None)
    worker_counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        root = write_folder(Path(scratch) / "folder", args.images)
        source = f"folder:{root}"
        in_memory = load_dataset(source, image_size=preset.resolution)
        streamed = load_dataset(source, image_size=preset.resolution, memory_budget=0)
        print(f"B0 on {len(in_memory.train_y)} folder images (64 px JPEG -> {preset.resolution} px), batch "
              f"{preset.batch_size}, {torch.get_num_threads()} training threads; second epoch's img/s "
              f"(first in brackets)", flush=True)
        rates: dict[str, list[float]] = {"memory": [], **{f"stream, {w} worker(s)": [] for w in worker_counts}}
        for r in range(args.rounds):
            runs = [("memory", in_memory, None)] + [(f"stream, {w} worker(s)", streamed, w) for w in worker_counts]
            line = []
            for label, data, workers in runs:
                history = train(efficientnet("b0"), data, preset, seed=r, loader_workers=workers).history
                rates[label].append(history[-1].images_per_s)
                line.append(f"{label} {history[-1].images_per_s:.0f} ({history[0].images_per_s:.0f})")
            print(f"round {r + 1}: " + ", ".join(line) + " img/s", flush=True)
        memory = statistics.median(rates["memory"])
        print("median: " + ", ".join(f"{label} {statistics.median(v):.0f} img/s ({statistics.median(v) / memory:.2f}x)"
                                     for label, v in rates.items()))


if __name__ == "__main__":
    main()
