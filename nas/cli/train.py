"""`nas train`: one proxy training run of a network, with a metrics JSON and a safetensors checkpoint."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from nas._common.runfiles import CHECKPOINT_FILE, METRICS_FILE, RUNS_DIR, SPEC_FILE
from nas.arch.resolve import resolve_spec
from nas.arch.spec import save_spec
from nas.errors import NasError
from nas.proxy.checkpoint import save_checkpoint, write_metrics
from nas.proxy.data import dataset_class_names, load_dataset
from nas.proxy.presets import PRESETS, get_preset
from nas.proxy.trainer import EpochReport, TrainingDiverged, train


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a network on a proxy task (progress, metrics, checkpoint)")
    parser.add_argument("model", help="name (b0..b7), spec .json, run folder or block strings")
    parser.add_argument("--data", default="fashion-mnist",
                        help="fashion-mnist[:DIR], idx:DIR, cifar10:DIR, cifar100:DIR or folder:DIR")
    parser.add_argument("--preset", default="full", choices=list(PRESETS), help="proxy preset (default: full)")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--resolution", type=int, help="override the preset's input resolution")
    parser.add_argument("--subset", type=int, help="override the preset's train+val pool size")
    parser.add_argument("--batch-size", type=int, help="override the preset's batch size")
    parser.add_argument("--randaugment", type=int, metavar="OPS",
                        help="RandAugment with OPS operations per batch (default: off)")
    parser.add_argument("--randaugment-magnitude", type=int, metavar="M", help="RandAugment magnitude, 1..29 (default: 9)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="validation share of the training set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); "
                        "1 is faster when other jobs share the cores")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/train-<model>-<preset>-s<seed>)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    spec = resolve_spec(args.model)
    preset = get_preset(args.preset).with_changes(epochs=args.epochs, resolution=args.resolution,
                                                  subset=args.subset, batch_size=args.batch_size,
                                                  randaugment_ops=args.randaugment,
                                                  randaugment_magnitude=args.randaugment_magnitude)
    if args.threads is not None:
        if args.threads < 1:
            raise NasError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    name = spec.name or Path(args.model).stem
    out = args.out or Path(RUNS_DIR) / f"train-{name}-{preset.name}-s{args.seed}"
    data = load_dataset(args.data, val_fraction=args.val_fraction, seed=args.seed)
    interactive = sys.stderr.isatty()
    try:
        result = train(spec, data, preset, seed=args.seed, evaluate_test=True, progress=interactive,
                       on_epoch=None if interactive else _print_epoch)
    except TrainingDiverged as exc:
        raise NasError(f"{exc}; try a smaller learning rate or batch size") from None
    metrics = {
        "model": name, "data": args.data, "seed": args.seed, "preset": asdict(preset),
        "threads": torch.get_num_threads(), "val_acc": result.val_acc, "test_acc": result.test_acc,
        "seconds": result.seconds, "images_per_s": result.images_per_s,
        "mean": result.mean, "std": result.std,
        "history": [asdict(report) for report in result.history], "spec": result.spec.to_dict(),
    }
    # What an export needs to feed the network as it was trained (nas.deploy.preprocessing.TrainingRecord).
    record = {"mean": result.mean, "std": result.std, "data": args.data, "seed": args.seed,
              "val_fraction": args.val_fraction, "class_names": dataset_class_names(args.data)}
    metrics.update(record)
    save_checkpoint(out / CHECKPOINT_FILE, result.state_dict, result.spec, record)
    save_spec(result.spec, out / SPEC_FILE)
    write_metrics(out / METRICS_FILE, metrics)
    test = "n/a (no test set)" if result.test_acc is None else f"{result.test_acc:.4f}"
    print(f"{name} ({preset.name}): val acc {result.val_acc:.4f}, test acc {test}, "
          f"{result.seconds:.1f} s, {result.images_per_s:.0f} img/s -> {out}")
    return 0


def _print_epoch(report: EpochReport) -> None:
    """One line per epoch where there is no terminal for a progress bar (logs, CI)."""
    print(f"epoch {report.epoch + 1}: loss {report.train_loss:.4f} train acc {report.train_acc:.4f} "
          f"val acc {report.val_acc:.4f} {report.images_per_s:.0f} img/s {report.seconds:.1f} s", flush=True)
