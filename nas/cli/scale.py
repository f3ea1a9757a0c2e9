"""`nas scale`: grid-search alpha, beta, gamma at phi = 1 on the proxy task, then emit the B1-B7-style family.

The one module of `nas` that imports the `scaling` package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas._common.parse import parse_flops_list, parse_numbers
from nas._common.runfiles import RUNS_DIR
from nas._common.tables import print_table
from nas.arch.efficientnet import is_family_name
from nas.arch.resolve import RUN_FOLDER_SPEC_FILES, resolve_spec
from nas.cli.config_file import add_config_option, save_run_settings
from nas.errors import NasError
from scaling.grid import CONSTRAINTS, DEPTH_ROUNDINGS
from scaling.outputs import skips_sentence
from scaling.pipeline import (
    ScalingOptions,
    ScalingReport,
    scale_base,
)

DEFAULT_RUNS = Path(RUNS_DIR)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = ScalingOptions()
    parser = subparsers.add_parser(
        "scale", help="find the compound-scaling coefficients on the proxy task and emit a family of networks"
    )
    parser.add_argument("--base", required=True,
                        help="the baseline: runs/<study>/best.json, a run folder, a spec .json or a name (b0)")
    parser.add_argument("--data", default=defaults.data, help="proxy data set (default %(default)s)")
    parser.add_argument("--grid-step", type=float, default=defaults.grid_step,
                        help="grid step for alpha in [1, 2], beta and gamma in [1, 1.5] (default %(default)s;"
                             " the paper's finer grid: 0.1 or 0.05)")
    parser.add_argument("--tolerance", type=float, default=defaults.tolerance,
                        help="keep points within this of a FLOPs ratio of 2 (default %(default)s)")
    parser.add_argument("--constraint", choices=CONSTRAINTS, default=defaults.constraint,
                        help="nominal: |alpha*beta^2*gamma^2 - 2| (the paper's way); actual: the rounded"
                             " network's FLOPs ratio (default %(default)s)")
    parser.add_argument("--depth-rounding", choices=DEPTH_ROUNDINGS, default=defaults.depth_rounding,
                        help="stage repeats: ceil (the reference's) or round to nearest (default %(default)s)")
    parser.add_argument("--proxy", default=defaults.proxy,
                        help="proxy preset whose recipe and base resolution every run uses (default %(default)s)")
    parser.add_argument("--rung-images", default=",".join(map(str, defaults.rung_images)),
                        help="successive halving: training images per run at each rung; the first rung trains"
                             " every point, each next the better half, the last the best two for two epochs"
                             " (default %(default)s)")
    parser.add_argument("--final-seeds", type=int, default=defaults.final_seeds,
                        help="seeds of the last rung's runs, to hold the winner's lead against (default %(default)s)")
    parser.add_argument("--ablation", action="store_true",
                        help="also train compound against depth-, width- and resolution-only scaling of the base"
                             " at the same FLOPs (ablation.csv, ablation.png)")
    parser.add_argument("--ablation-budgets", default=",".join(f"{b:g}" for b in defaults.ablation_budgets),
                        help="FLOPs budgets of the ablation as multiples of the base's (default %(default)s)")
    parser.add_argument("--keep-skips", action="store_true",
                        help="scale the base as it is: by default a stage without an identity skip gets one,"
                             " since a plain stage made deeper does not train")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", help="where the grid points train: auto (CUDA when there is a GPU), cpu, "
                                         "cuda, cuda:N or mps (default auto)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--study", help="run folder name under --runs (default: the base's study folder,"
                                        " or scale-<base>)")
    parser.add_argument("--storage", help="Optuna storage URL shared by workers (default: the run folder's"
                                          " scaling.journal)")
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="where run folders go (default runs)")
    for name, dimension in (("alpha", "depth"), ("beta", "width"), ("gamma", "resolution")):
        parser.add_argument(f"--{name}", type=float,
                            help=f"{dimension} coefficient: give all three to skip the grid search")
    parser.add_argument("--published", action="store_true",
                        help="emit the published B1-B7 multipliers (no grid search)")
    parser.add_argument("--budgets", help="FLOPs budgets, e.g. 0.7e9,1.8e9: one member per budget at the"
                                          " largest phi that fits it")
    add_config_option(parser)
    parser.set_defaults(run=run)


def run_folder(base: str, study: str | None, runs: Path) -> Path:
    """Where the family goes: --study under runs/; else the study folder the base came from
    (runs/<study>/best.json or a run folder); else runs/scale-<base name or file stem>."""
    if study:
        return runs / study
    path = Path(base)
    if path.is_dir():
        return path
    if path.is_file() and path.name in RUN_FOLDER_SPEC_FILES:
        return path.parent
    name = base.strip().lower().split("_")[-1] if is_family_name(base) else path.stem
    return runs / f"scale-{name}"


def _coefficients(args: argparse.Namespace) -> tuple[float, float, float] | None:
    given = (args.alpha, args.beta, args.gamma)
    if all(value is None for value in given):
        return None
    if any(value is None for value in given):
        raise NasError("give all three of --alpha, --beta and --gamma, or none to search them")
    return given  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    base = resolve_spec(args.base)
    if args.threads is not None:
        if args.threads < 1:
            raise NasError(f"--threads must be at least 1, got {args.threads}")
        import torch  # only here: the family alone never needs torch

        torch.set_num_threads(args.threads)
    options = ScalingOptions(
        grid_step=args.grid_step, tolerance=args.tolerance, constraint=args.constraint,
        depth_rounding=args.depth_rounding, data=args.data, proxy=args.proxy,
        rung_images=parse_numbers(args.rung_images, "--rung-images", int), final_seeds=args.final_seeds,
        ablation=args.ablation, ablation_budgets=parse_numbers(args.ablation_budgets, "--ablation-budgets", float),
        seed=args.seed,
        storage=args.storage, coefficients=_coefficients(args), published=args.published,
        budgets=parse_flops_list(args.budgets) if args.budgets else None, progress=sys.stderr.isatty(),
        device=args.device, keep_skips=args.keep_skips,
    )
    folder = run_folder(args.base, args.study, args.runs)
    try:
        report = scale_base(base, folder, options)
    except KeyboardInterrupt:
        save_run_settings(args, folder, "scale")  # the run started with them; it resumes with them
        raise
    save_run_settings(args, folder, "scale")
    _print_report(report)
    return 0


def _print_report(report: ScalingReport) -> None:
    if report.skips_added:
        print(skips_sentence(report.skips_added))
    if report.grid:
        print("grid at phi = 1:")
        print_table(report.grid)
    if report.unfinished:
        print(f"{report.unfinished} grid point(s) still training in another process: the choice uses the"
              " points finished so far; run again to update it")
    if report.coefficients:
        alpha, beta, gamma = report.coefficients
        print(f"coefficients: alpha={alpha:g} beta={beta:g} gamma={gamma:g}"
              f" (alpha*beta^2*gamma^2 = {alpha * beta**2 * gamma**2:.3f})")
    else:
        print("coefficients: the published B1-B7 multipliers")
    if report.separation:
        print(f"against the seed spread: {report.separation}")
    for line in report.verdicts:
        print(f"ablation: {line}")
    print_table(report.family)
    if report.left_out:
        print(f"left out {', '.join(report.left_out)}: past the spec's limits (64 blocks a stage, 4096 pixels)")
    print(f"wrote {report.folder} in {report.seconds:.0f} s")
