"""`nas train`: one training run of a network (on a CPU, a GPU or several processes under torchrun), with a
metrics JSON, a safetensors checkpoint, and a training state that a killed run resumes from."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from nas._common.parse import parse_bytes, parse_field_changes
from nas._common.runfiles import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    RUNS_DIR,
    SPEC_FILE,
    TRAIN_STATE_FILE,
)
from nas.arch.resolve import resolve_spec
from nas.arch.spec import save_spec
from nas.errors import NasError
from nas.model.device import AMP_DTYPES, DEVICE_CHOICES
from nas.proxy import distributed
from nas.proxy.checkpoint import save_checkpoint, write_metrics
from nas.proxy.data import dataset_class_names, load_dataset
from nas.proxy.folder import CORRUPT_POLICIES
from nas.proxy.presets import PRESETS, get_preset
from nas.proxy.trainer import EpochReport, TrainingDiverged, train

FINETUNE_PRESET = "finetune"  # the default preset with --init-from


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a network (progress, metrics, checkpoint, resume)")
    parser.add_argument("model", help="name (b0..b7), spec .json, run or export folder, or block strings")
    parser.add_argument("--data", default="fashion-mnist",
                        help="fashion-mnist[:DIR], idx:DIR, cifar10:DIR, cifar100:DIR or folder:DIR")
    parser.add_argument("--preset", choices=list(PRESETS),
                        help=f"training preset (default: full; {FINETUNE_PRESET} with --init-from)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="train this many passes over the data instead of the "
                                                   "preset's number of images")
    length.add_argument("--images", type=int, help="override the preset's training images seen (steps x batch)")
    parser.add_argument("--resolution", type=_resolution, help="override the preset's input resolution "
                        "(folder images are decoded at it); 'spec' trains at the spec's own, e.g. 300 for b3")
    parser.add_argument("--subset", type=int, help="override the preset's train+val pool size")
    parser.add_argument("--batch-size", type=int, help="override the preset's batch size (per process)")
    parser.add_argument("--lr", type=float, metavar="LR_PER_256",
                        help="override the preset's learning rate per 256 images (scaled to the global batch)")
    parser.add_argument("--randaugment", type=int, metavar="OPS",
                        help="RandAugment with OPS operations per batch (default: off)")
    parser.add_argument("--randaugment-magnitude", type=int, metavar="M", help="RandAugment magnitude, 1..29 (default: 9)")
    parser.add_argument("--preset-change", action="append", default=[], metavar="FIELD=VALUE",
                        help="change any field of the preset, e.g. flip=false or crop_padding=0.03125 (the fields "
                             "of nas.proxy.presets.ProxyPreset); repeatable, applied after the flags above")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="validation share of the training set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads per process (default: torch's choice); "
                        "1 is faster when other jobs share the cores")
    parser.add_argument("--device", default="auto", help=f"{', '.join(DEVICE_CHOICES)} (default: auto, "
                                                         "CUDA when there is a GPU)")
    parser.add_argument("--amp", choices=list(AMP_DTYPES), help="mixed precision (default: bf16 on CUDA, off "
                                                                "elsewhere)")
    parser.add_argument("--compile", action="store_true", help="run the network through torch.compile")
    parser.add_argument("--nproc", type=int, help="train with DistributedDataParallel in NPROC processes on "
                                                  "this machine (starts torchrun)")
    parser.add_argument("--init-from", metavar="SOURCE",
                        help="start from trained weights: an export or run folder, or a .safetensors file "
                             "(classifier replaced, stem adapted where the data differ)")
    parser.add_argument("--memory-budget", metavar="BYTES",
                        help="decoded folder images held in memory, e.g. 8G; a larger folder streams from "
                             "disk (default: $NAS_MEMORY_BUDGET or 2G)")
    parser.add_argument("--loader-workers", type=int, help="DataLoader processes decoding a streamed folder "
                                                           "(default: the cores left over)")
    parser.add_argument("--corrupt", choices=CORRUPT_POLICIES, default="fail",
                        help="an undecodable image: fail naming it, or skip it with a count in the log "
                             "(default: %(default)s)")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/train-<model>-<preset>-s<seed>)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.nproc is not None and not distributed.launched_by_torchrun():
        distributed.launch_local(args.nproc, _without_nproc(args.argv), args.threads)
        return 0
    place = distributed.init_from_env(args.device)
    try:
        return _train(args, place is None or place.is_main)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace, is_main: bool) -> int:
    spec = resolve_spec(args.model)
    init_state, init_origin = _init_weights(args.init_from) if args.init_from else (None, None)
    resolution = spec.resolution if args.resolution == "spec" else args.resolution
    preset = get_preset(args.preset or (FINETUNE_PRESET if args.init_from else "full")).with_changes(
        epochs=args.epochs, images=args.images, resolution=resolution, subset=args.subset,
        batch_size=args.batch_size, lr_per_256=args.lr, randaugment_ops=args.randaugment,
        randaugment_magnitude=args.randaugment_magnitude)
    changes = parse_field_changes(args.preset_change, "--preset-change")
    try:
        preset = preset.with_changes(**changes)
    except NasError as exc:
        raise NasError(f"--preset-change: {exc}") from None
    if args.threads is not None:
        if args.threads < 1:
            raise NasError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    name = spec.name or Path(args.model).stem
    out = args.out or Path(RUNS_DIR) / f"train-{name}-{preset.name}-s{args.seed}"
    data = load_dataset(args.data, val_fraction=args.val_fraction, seed=args.seed, image_size=preset.resolution,
                        memory_budget=None if args.memory_budget is None else parse_bytes(args.memory_budget),
                        corrupt=args.corrupt)
    interactive = sys.stderr.isatty()
    try:
        result = train(spec, data, preset, seed=args.seed, evaluate_test=True, progress=interactive,
                       on_epoch=None if interactive else _print_epoch, device=args.device, amp=args.amp,
                       compile=args.compile, init_from=init_state, state_path=out / TRAIN_STATE_FILE,
                       loader_workers=args.loader_workers)
    except TrainingDiverged as exc:
        raise NasError(f"{exc}; try a smaller learning rate or batch size") from None
    if not is_main:
        return 0
    for note in result.transfer_notes:
        print(f"init from {init_origin}: {note}")
    if result.resumed_at_step is not None:
        print(f"resumed from {out / TRAIN_STATE_FILE} at step {result.resumed_at_step} of {result.steps}")
    metrics = {
        "model": name, "data": args.data, "seed": args.seed, "preset": asdict(preset),
        "threads": torch.get_num_threads(), "device": result.device, "amp": result.amp,
        "processes": result.world_size, "data_path": result.data_path, "steps": result.steps,
        "val_acc": result.val_acc, "test_acc": result.test_acc,
        "seconds": result.seconds, "images_per_s": result.images_per_s,
        "mean": result.mean, "std": result.std, "init_from": init_origin,
        "transfer": list(result.transfer_notes), "resumed_at_step": result.resumed_at_step,
        "corrupt_skipped": list(result.corrupt_skipped),
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
    where = result.device + (f" x {result.world_size} processes" if result.world_size > 1 else "")
    print(f"{name} ({preset.name}, {result.steps} steps on {where}, amp {result.amp}): val acc {result.val_acc:.4f}, "
          f"test acc {test}, {result.seconds:.1f} s, {result.images_per_s:.0f} img/s -> {out}")
    return 0


def _resolution(text: str) -> int | str:
    """--resolution: pixels, or 'spec' for the network's own resolution."""
    if text.strip().lower() == "spec":
        return "spec"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected pixels or 'spec', got {text!r}") from None


def _init_weights(source: str) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors to start from: a .safetensors file, or the weights of an export, run or study folder."""
    from nas.deploy.load import read_weights
    from nas.deploy.sources import read_source

    path = Path(source)
    if path.is_file():
        return read_weights(path), str(path)
    found = read_source(source)
    if found.weights is None:
        raise NasError(f"--init-from {source}: the folder holds no weights (model.safetensors or "
                       "checkpoint.safetensors)")
    return read_weights(found.weights), str(found.weights)


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line for each torchrun process: this one without --nproc."""
    kept, skip = [], False
    for arg in argv:
        option, equals, _ = arg.partition("=")
        is_nproc = option.startswith("--np") and "--nproc".startswith(option)  # argparse takes abbreviations
        if skip:
            skip = False
        elif is_nproc:
            skip = not equals
        else:
            kept.append(arg)
    return kept


def _print_epoch(report: EpochReport) -> None:
    """One line per epoch where there is no terminal for a progress bar (logs, CI)."""
    print(f"epoch {report.epoch + 1}: loss {report.train_loss:.4f} train acc {report.train_acc:.4f} "
          f"val acc {report.val_acc:.4f} {report.images_per_s:.0f} img/s {report.seconds:.1f} s", flush=True)
