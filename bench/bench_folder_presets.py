"""Presets sized in images seen, on a small folder data set: B0's `search`-preset validation accuracy next to
its `full`-preset accuracy, on a folder of about 4,000 small images the bench writes.

The folder is what a new user brings: DIR/train/<class>/<image>.png (4,000 Fashion-MNIST training images, 28 px,
drawn with a seed) and DIR/val/<class>/<image>.png (1,000 test images, the folder's test set); the validation
split is carved from train/ as for any data set. Sized in epochs, the `search` preset gave such a folder 4
epochs of 28 steps; sized in images, it gets the 280 steps it has on the Fashion-MNIST subset. Usage
(the full preset trains 6,315 steps of B0: run each preset as its own step under the shared lock):

    python bench/bench_folder_presets.py [--preset search,full] [--folder DIR] [--images 4000] [--seed 0]
    python bench/bench_folder_presets.py --preset search --epochs 4   # the search preset as it was, in epochs
    python bench/bench_folder_presets.py --preset search --change lr_per_256=0.016   # another recipe
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from nas._common.parse import parse_field_changes
from nas.arch.efficientnet import efficientnet
from nas.proxy.data import load_dataset
from nas.proxy.presets import get_preset
from nas.proxy.trainer import train


def write_folder(root: Path, images: int, test_images: int, seed: int) -> Path:
    """DIR/train and DIR/val of Fashion-MNIST PNGs, one folder per class (skipped if DIR/train exists)."""
    if (root / "train").is_dir():
        return root
    source = load_dataset("fashion-mnist", seed=seed)
    pool_x = torch.cat([source.train_x, source.val_x])[:images]  # the split is a seeded shuffle: a random draw
    pool_y = torch.cat([source.train_y, source.val_y])[:images]
    for split, xs, ys in (("train", pool_x, pool_y), ("val", source.test_x[:test_images], source.test_y[:test_images])):
        for i, (x, y) in enumerate(zip(xs, ys)):
            folder = root / split / f"class{int(y)}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[0].numpy()).save(folder / f"{i:05d}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="search,full", help="comma-separated presets to train")
    parser.add_argument("--folder", type=Path, help="where the folder is written (default: a temporary one)")
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="size the presets in epochs instead (the old way)")
    parser.add_argument("--change", action="append", default=[], metavar="FIELD=VALUE",
                        help="train the presets with this field changed (e.g. lr_per_256=0.016); repeatable")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        root = write_folder(args.folder or Path(scratch) / "folder", args.images, args.test_images, args.seed)
        changes = parse_field_changes(args.change, "--change")
        for name in args.preset.split(","):
            preset = get_preset(name).with_changes(epochs=args.epochs, **changes)
            data = load_dataset(f"folder:{root}", seed=args.seed, image_size=preset.resolution)
            started = time.perf_counter()
            result = train(efficientnet("b0"), data, preset, seed=args.seed, evaluate_test=True)
            print(f"B0, preset {name} ({preset.length}) on {len(data.train_y)} + {len(data.val_y)} folder images "
                  f"at {preset.resolution} px{''.join(f', {k}={v}' for k, v in changes.items())}: {result.steps} steps in {len(result.history)} epochs, "
                  f"val acc {result.val_acc:.4f}, test acc {result.test_acc:.4f}, "
                  f"{(time.perf_counter() - started) / 60:.1f} min, {result.images_per_s:.0f} img/s, "
                  f"{torch.get_num_threads()} threads", flush=True)


if __name__ == "__main__":
    main()
