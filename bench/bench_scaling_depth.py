"""Why deep grid points fail on a base whose stages lack the identity skip, and what makes them train.

Trains grid points of the base as the grid's first rung does (the `scale` preset, the rung's images, one
seed, the fixed validation set) under variants: the base as it is, with a lower learning rate, a longer run,
and with every stage's identity skip on (what `nas scale` does unless --keep-skips). Prints each run's
last-epoch loss, validation accuracy and whether it trained (scaling.halving.did_train). Usage:

    python bench/bench_scaling_depth.py --base runs/search/best.json [--points 2,1,1 1.6,1.1,1 1,1.3,1.1]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from nas.arch.resolve import resolve_spec
from nas.proxy.data import load_dataset
from nas.proxy.presets import get_preset
from nas.proxy.trainer import train
from scaling.grid import scale_point
from scaling.halving import DEFAULT_RUNGS, Rung, did_train, proxy_resolution, rung_data
from scaling.pipeline import DEFAULT_PROXY, with_identity_skips

# name -> (identity skips on, learning-rate multiple, rung-length multiple: that many times the rung's images)
VARIANTS = {
    "as is": (False, 1.0, 1),
    "as is, lr / 2": (False, 0.5, 1),
    "as is, lr / 8": (False, 0.125, 1),
    "as is, 4x longer": (False, 1.0, 4),
    "identity skips on": (True, 1.0, 1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="a spec file, run folder or family name")
    parser.add_argument("--points", nargs="+", default=["2,1,1", "1.6,1.1,1", "1,1.3,1.1"],
                        help="alpha,beta,gamma of each point")
    parser.add_argument("--data", default="fashion-mnist", help="the grid's data set (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base = resolve_spec(args.base)
    skipped, lacking = with_identity_skips(base)
    print(f"base {args.base}: stages without an identity skip: {lacking or 'none'}")
    preset = get_preset(DEFAULT_PROXY)
    first = DEFAULT_RUNGS[0]
    data = load_dataset(args.data, seed=args.seed)
    print(f"{'variant':20s} {'point':16s} {'blocks':>6s} {'steps':>5s} {'loss':>6s} {'val_acc':>7s}  trained  seconds")
    for name, (skips, lr_multiple, length) in VARIANTS.items():
        if skips and not lacking:
            continue  # the base has every skip: the variant is "as is"
        for text in args.points:
            alpha, beta, gamma = (float(value) for value in text.split(","))
            spec = scale_point(skipped if skips else base, alpha, beta, 1.0)
            rung = Rung(1.0, first.images * length, first.epochs)
            run = dataclasses.replace(
                preset.with_changes(resolution=proxy_resolution(preset, gamma), epochs=rung.epochs,
                                    lr_per_256=preset.lr_per_256 * lr_multiple), subset=None)
            started = time.perf_counter()
            result = train(spec, rung_data(data, rung), run, seed=args.seed, progress=False)
            last = result.history[-1]
            failure = did_train(result.history, data.num_classes)
            blocks = sum(stage.repeats for stage in spec.stages)
            steps = rung.images // run.batch_size
            print(f"{name:20s} a{alpha:g}_b{beta:g}_g{gamma:g}".ljust(38) +
                  f"{blocks:6d} {steps:5d} {last.train_loss:6.3f} {last.val_acc:7.4f}  "
                  f"{'yes' if failure is None else 'no':7s}  {time.perf_counter() - started:7.0f}", flush=True)


if __name__ == "__main__":
    main()
