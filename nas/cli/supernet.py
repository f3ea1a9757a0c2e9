"""`nas supernet train|score`: train a search space's weight-sharing supernet once, score networks on it.

A trained supernet folder can be reused by several searches (`nas search --supernet FOLDER`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas._common.parse import parse_flops, parse_window
from nas._common.runfiles import RUNS_DIR
from nas._common.tables import print_table
from nas.errors import NasError

DEFAULT_FOLDER = Path(RUNS_DIR) / "supernet"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("supernet", help="train a space's weight-sharing supernet; score networks on it")
    actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
    train = actions.add_parser("train", help="train (or resume) a supernet into a folder")
    train.add_argument("--space", default="mnasnet", help="search space name or .toml file (default: %(default)s)")
    train.add_argument("--data", default="fashion-mnist", help="proxy data set (default: %(default)s)")
    train.add_argument("--preset", default="search", help="supernet training preset (default: %(default)s)")
    train.add_argument("--steps", type=int, help="optimizer steps, overriding the preset's")
    train.add_argument("--target-flops", default="400M", help="the search's FLOPs target (default: %(default)s)")
    train.add_argument("--flops-window", default="0.75,1.25",
                       help="random sandwich members are drawn in LOW,HIGH x target (default: %(default)s)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    train.add_argument("--out", type=Path, default=DEFAULT_FOLDER, help="the supernet's folder (default: %(default)s)")
    train.set_defaults(run=run_train)
    score = actions.add_parser("score", help="score networks of the supernet's space on its validation split")
    score.add_argument("folder", type=Path, help="a trained supernet's folder")
    score.add_argument("models", nargs="+", help="names (b0), spec .json files, run folders or block strings")
    score.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    score.set_defaults(run=run_score)


def _threads(value: int | None) -> None:
    if value is not None:
        if value < 1:
            raise NasError(f"--threads must be at least 1, got {value}")
        import torch

        torch.set_num_threads(value)


def run_train(args: argparse.Namespace) -> int:
    from nas.arch.space import load_space
    from nas.proxy.data import load_dataset
    from nas.supernet.training import get_supernet_preset, train_supernet

    _threads(args.threads)
    space = load_space(args.space)
    preset = get_supernet_preset(args.preset).with_changes(steps=args.steps)
    target, (low, high) = parse_flops(args.target_flops), parse_window(args.flops_window)
    data = load_dataset(args.data, seed=args.seed)
    print(f"supernet of space {space.name!r} on {args.data}: {preset.steps} steps of batch {preset.batch_size} "
          f"at {preset.resolution} px, random members in {low * target / 1e6:g}M-{high * target / 1e6:g}M FLOPs; "
          f"checkpoint {args.out}", flush=True)
    run = train_supernet(space, data, preset, window=(low * target, high * target), seed=args.seed,
                         folder=args.out, on_log=_print_log, data_source=args.data)
    print(f"trained {run.steps_done} steps in {run.seconds:.0f} s of training -> {args.out}")
    return 0


def _print_log(figures: dict) -> None:
    print(f"step {figures['step']}/{figures['steps']}: loss largest {figures['loss_largest']:.3f} "
          f"smallest {figures['loss_smallest']:.3f} lr {figures['lr']:.4g} "
          f"{figures['images_per_s']:.0f} img/s", file=sys.stdout, flush=True)


def run_score(args: argparse.Namespace) -> int:
    from nas.arch.cost import count_flops, count_params
    from nas.arch.resolve import resolve_spec
    from nas.supernet.scoring import SupernetScorer, scoring_data
    from nas.supernet.training import load_supernet

    _threads(args.threads)
    run = load_supernet(args.folder)
    data = scoring_data(run)
    scorer = SupernetScorer(run.supernet, data, run.preset.resolution)
    rows = []
    for text in args.models:
        spec = resolve_spec(text)
        score = scorer.score(spec)
        rows.append({"model": spec.name or text, "flops": count_flops(spec), "params": count_params(spec),
                     "val_acc": round(score.accuracy, 4), "val_loss": round(score.loss, 4),
                     "seconds": round(score.seconds, 3)})
    print_table(rows)
    return 0
