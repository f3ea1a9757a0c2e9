"""Why the proxy recipe departs from the reference: B0 trained with the proxy preset and with each departure
undone, one at a time, on the same data and seed. Prints validation accuracy and time per variant.

The variants: the preset as shipped; the reference's initialisation (He-normal on fan-out); the reference's
learning rate (0.016 per 256 images); the reference's BN momentum (0.01 in PyTorch's convention); RandAugment
on (2 operations, magnitude 9); the reference's random crop and flip, which the `search` preset leaves out (a
1-pixel crop, no flip); and no crop at all. Usage:

    python bench/bench_proxy_recipe.py [--preset search] [--seed 0] [--data fashion-mnist] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from nas._common.tables import print_table
from nas.arch.efficientnet import efficientnet
from nas.proxy.data import load_dataset
from nas.proxy.presets import get_preset
from nas.proxy.trainer import train

VARIANTS = {
    "as shipped": {},
    "reference init": {"init": "reference"},
    "reference lr (0.016/256)": {"lr_per_256": 0.016},
    "reference BN momentum (0.01)": {"bn_momentum": 0.01},
    "RandAugment 2 ops, m 9": {"randaugment_ops": 2},
    "reference crop (4 px at 32) and flip": {"crop_padding": 0.125, "flip": True},
    "no crop, no flip": {"crop_padding": 0.0, "flip": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="search")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = get_preset(args.preset)
    data = load_dataset(args.data, subset=base.subset, seed=args.seed)
    print(f"B0, preset {base.name} ({base.length}, {base.subset or 'all'} images, {base.resolution} px), "
          f"data {args.data}, seed {args.seed}, {torch.get_num_threads()} threads")
    rows = []
    for name, changes in VARIANTS.items():
        started = time.perf_counter()
        result = train(efficientnet("b0"), data, base.with_changes(**changes), seed=args.seed)
        rows.append({"variant": name, "val_acc": round(result.val_acc, 4),
                     "per_epoch": " ".join(f"{h.val_acc:.3f}" for h in result.history),
                     "seconds": round(time.perf_counter() - started, 1)})
        print_table(rows[-1:])
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
