"""`nas search`: the baseline architecture search (a thin layer over nas.search.run_search)."""

from __future__ import annotations

import argparse

from nas._common.parse import parse_flops, parse_timeout, parse_window
from nas.search.config import SAMPLERS, SearchConfig, with_changes


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = SearchConfig()
    parser = subparsers.add_parser(
        "search", help="search a baseline architecture toward a FLOPs target (Optuna, multi-objective)",
        description="Search a space for the architecture with the best reward ACC x (FLOPs/T)^w. "
                    "Running the same command again resumes the study; --n-trials is the study's total.")
    parser.add_argument("--space", default=defaults.space,
                        help="search space name or .toml file (default: %(default)s)")
    parser.add_argument("--data", default=defaults.data, help="proxy data set (default: %(default)s)")
    parser.add_argument("--proxy", default=defaults.proxy, help="proxy training preset (default: %(default)s)")
    parser.add_argument("--target-flops", default="400M", help="FLOPs target T, e.g. 400M (default: %(default)s)")
    parser.add_argument("--reward-weight", type=float, default=defaults.reward_weight,
                        help="soft reward exponent w (default: %(default)s)")
    parser.add_argument("--hard-reward", action="store_true", help="hard variant: w = 0 below T, -1 above")
    parser.add_argument("--flops-window", default="0.75,1.25",
                        help="soft FLOPs window as multiples of T, guides the samplers (default: %(default)s)")
    parser.add_argument("--hard-cap", type=float, default=defaults.hard_cap,
                        help="candidates above this multiple of T are not trained (default: %(default)s)")
    parser.add_argument("--n-trials", type=int, default=defaults.n_trials,
                        help="finished trials the study should hold (default: %(default)s)")
    parser.add_argument("--timeout", default=str(defaults.timeout),
                        help="start no new trial after this many seconds, 'none' for no limit "
                             "(default: %(default)s)")
    parser.add_argument("--sampler", default=defaults.sampler,
                        help=f"one of {', '.join(SAMPLERS)} (default: %(default)s)")
    parser.add_argument("--population", type=int, default=defaults.population,
                        help="NSGA-II population / TPE start-up trials (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed (default: %(default)s)")
    parser.add_argument("--study", default=defaults.study,
                        help="study name; its folder is runs/STUDY (default: %(default)s)")
    parser.add_argument("--storage", help="Optuna storage URL (default: runs/STUDY/study.journal)")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (default: %(default)s)")
    parser.add_argument("--threads", type=int,
                        help="torch threads per worker (default: torch's choice, or cores / workers); "
                             "1 is fastest on a machine busy with other jobs")
    parser.add_argument("--device", default=defaults.device,
                        help="where candidates train: auto (CUDA when there is a GPU), cpu, cuda, cuda:N or mps; "
                             "with --workers, one worker per visible GPU (default: %(default)s)")
    parser.add_argument("--enqueue", action="append", default=[], metavar="MODEL",
                        help="evaluate this model first (b0, a spec .json ...); repeatable")
    parser.add_argument("--runs-dir", default=defaults.runs_dir, help="folder of run folders (default: %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = with_changes(
        SearchConfig(timeout=parse_timeout(args.timeout)), study=args.study, space=args.space, data=args.data,
        proxy=args.proxy,
        target_flops=parse_flops(args.target_flops), reward_weight=args.reward_weight,
        hard_reward=args.hard_reward, flops_window=parse_window(args.flops_window), hard_cap=args.hard_cap,
        n_trials=args.n_trials, sampler=args.sampler, population=args.population,
        seed=args.seed, storage=args.storage, workers=args.workers, threads=args.threads, device=args.device,
        enqueue=tuple(args.enqueue), runs_dir=args.runs_dir,
    )
    print(f"search {config.study!r}: space {config.space}, data {config.data}, proxy {config.proxy}, "
          f"target {config.target_flops / 1e6:g}M FLOPs, {config.n_trials} trials, sampler {config.sampler}, "
          f"seed {config.seed}, {config.workers} worker(s); outputs in {config.run_dir}/", flush=True)
    import optuna

    from nas.search.report import completed_trials, selected_trial
    from nas.search.run import (
        run_search,  # Optuna and torch load only when a search runs
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress lines say what matters

    study = run_search(config)
    best = selected_trial(completed_trials(study))
    if best is None:
        print("no completed trial: nothing selected")
        return 0
    attrs = best.user_attrs
    print(f"selected: trial {best.number}  {attrs['arch']}  {attrs['flops'] / 1e6:.1f}M FLOPs  "
          f"{attrs['params']:,} params  acc {attrs['accuracy']:.4f}  reward {attrs['reward']:.4f}")
    print(f"wrote {config.run_dir}/best.json, trials.csv, pareto.csv, pareto.png, summary.md")
    return 0
