"""`nas report runs/STUDY`: regenerate a search study's outputs from its storage."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="regenerate a search run's trials.csv, pareto.csv, "
                                                  "best.json, pareto.png and summary.md")
    parser.add_argument("run_dir", help="the run folder, e.g. runs/search")
    parser.add_argument("--storage", help="Optuna storage URL, when the study is not in the folder's journal")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nas.search.report import (  # Optuna loads only when used
        load_run_study,
        write_outputs,
    )

    study = load_run_study(args.run_dir, args.storage)
    for path in write_outputs(study, args.run_dir):
        print(f"wrote {path}")
    return 0
