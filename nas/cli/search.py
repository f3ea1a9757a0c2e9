"""`nas search`: the baseline architecture search (a thin layer over nas.search.run_search)."""

from __future__ import annotations

import argparse

from nas._common.parse import parse_flops, parse_latency, parse_timeout, parse_window
from nas.cli.config_file import add_config_option, save_run_settings
from nas.search.config import OBJECTIVES, SAMPLERS, STRATEGIES, SearchConfig, proxy_label
from nas.search.cost import LATENCY


def _per_strategy(key: str) -> str:
    return ", ".join(f"{getattr(strategy, key):g} ({name})" for name, strategy in STRATEGIES.items())


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = SearchConfig()
    parser = subparsers.add_parser(
        "search", help="search a baseline architecture toward a FLOPs or latency target (Optuna, multi-objective)",
        description="Search a space for the architecture with the best reward ACC x (COST/T)^w, COST the FLOPs "
                    "or (--objective latency) the latency a latency table predicts. "
                    "Running the same command again resumes the study; --n-trials is the study's total.")
    parser.add_argument("--strategy", default=defaults.strategy, choices=STRATEGIES,
                        help="halving: train every candidate over --screen-fraction of the proxy's length, then "
                             "retrain the Pareto candidates around the target over all of it; supernet: score "
                             "thousands of candidates on a weight-sharing supernet, then retrain the Pareto "
                             "candidates stand-alone; standalone: train every candidate (default: %(default)s)")
    parser.add_argument("--space", default=defaults.space,
                        help="search space name or .toml file (default: %(default)s)")
    parser.add_argument("--data", default=defaults.data, help="proxy data set (default: %(default)s)")
    parser.add_argument("--proxy", default=defaults.proxy,
                        help="stand-alone training preset: every candidate, or the finalists (halving: its screening "
                             "runs are --screen-fraction of it) (default: %(default)s)")
    parser.add_argument("--proxy-change", action="append", default=[], metavar="FIELD=VALUE",
                        help="change a field of the proxy preset for this search, e.g. flip=false or "
                             "crop_padding=0.03125 (the fields of nas.proxy.presets.ProxyPreset); repeatable")
    parser.add_argument("--screen-fraction", type=float, default=defaults.screen_fraction,
                        help="halving strategy: the screening run's share of the proxy's length "
                             "(default: %(default)s)")
    parser.add_argument("--supernet", metavar="FOLDER",
                        help="reuse a trained supernet (nas supernet train --out FOLDER) instead of training one "
                             "in the run folder")
    parser.add_argument("--supernet-preset", default=defaults.supernet_preset,
                        help="supernet training preset (default: %(default)s)")
    parser.add_argument("--finalists", type=int, default=defaults.finalists,
                        help="halving and supernet: Pareto candidates around the target retrained stand-alone, "
                             "besides the enqueued models (default: %(default)s)")
    parser.add_argument("--objective", default=defaults.objective, choices=OBJECTIVES,
                        help="the cost minimised beside accuracy and held to its target: flops, or latency as "
                             "--latency-table predicts it (FLOPs are recorded either way) (default: %(default)s)")
    parser.add_argument("--target-flops", default="400M",
                        help="FLOPs target T, e.g. 400M; with --objective latency it only places the supernet's "
                             "sandwich window (--flops-window x this) (default: %(default)s)")
    parser.add_argument("--target-latency", metavar="TIME",
                        help="--objective latency: the latency target T, with its unit: 20ms, 0.02s")
    parser.add_argument("--latency-table", metavar="TABLE",
                        help="--objective latency: the table (file or folder, built by `nas latency-table`) that "
                             "predicts each candidate's latency; it must cover the space")
    parser.add_argument("--reward-weight", type=float, default=defaults.reward_weight,
                        help="soft reward exponent w (default: %(default)s)")
    parser.add_argument("--hard-reward", action="store_true", help="hard variant: w = 0 below T, -1 above")
    parser.add_argument("--flops-window", default="0.75,1.25",
                        help="soft window as multiples of T (FLOPs or latency), guides the samplers; the supernet's "
                             "sandwich members are drawn inside it around --target-flops (default: %(default)s)")
    parser.add_argument("--hard-cap", type=float, default=defaults.hard_cap,
                        help="candidates above this multiple of T are not trained (default: %(default)s)")
    parser.add_argument("--n-trials", type=int,
                        help=f"finished trials the study should hold (default: {_per_strategy('n_trials')})")
    parser.add_argument("--timeout",
                        help="start no new trial after this many seconds, 'none' for no limit "
                             f"(default: {_per_strategy('timeout')})")
    parser.add_argument("--sampler", default=defaults.sampler,
                        help=f"one of {', '.join(SAMPLERS)} (default: %(default)s)")
    parser.add_argument("--population", type=int,
                        help=f"NSGA-II population / TPE start-up trials (default: {_per_strategy('population')})")
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
    add_config_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    given = dict(
        strategy=args.strategy, timeout=parse_timeout(args.timeout) if args.timeout else None, study=args.study,
        space=args.space, data=args.data, proxy=args.proxy, proxy_changes=tuple(args.proxy_change),
        screen_fraction=args.screen_fraction,
        supernet=args.supernet,
        supernet_preset=args.supernet_preset, finalists=args.finalists, objective=args.objective,
        target_flops=parse_flops(args.target_flops), reward_weight=args.reward_weight,
        target_latency=parse_latency(args.target_latency) if args.target_latency else None,
        latency_table=args.latency_table,
        hard_reward=args.hard_reward, flops_window=parse_window(args.flops_window), hard_cap=args.hard_cap,
        n_trials=args.n_trials, sampler=args.sampler, population=args.population,
        seed=args.seed, storage=args.storage, workers=args.workers, threads=args.threads, device=args.device,
        enqueue=tuple(args.enqueue), runs_dir=args.runs_dir,
    )
    # Only what was given: the rest keeps SearchConfig's defaults, which depend on the strategy.
    config = SearchConfig(**{key: value for key, value in given.items() if value is not None})
    proxy = proxy_label(config.identity())
    estimator = {
        "halving": f"screening runs ({config.screen_fraction:g} of proxy {proxy}), then {config.finalists} "
                   f"finalists retrained with all of it",
        "supernet": f"supernet ({config.supernet or 'trained in the run folder'}), then {config.finalists} "
                    f"finalists retrained with proxy {proxy}",
        "standalone": f"proxy {proxy}",
    }[config.strategy]
    cost = config.cost
    table = f" (predicted by {config.latency_table})" if config.latency_table else ""
    print(f"search {config.study!r}: space {config.space}, data {config.data}, {estimator}, "
          f"target {cost.kind.plain(cost.target)} {cost.kind.name}{table}, {config.n_trials} trials, "
          f"sampler {config.sampler}, "
          f"seed {config.seed}, {config.workers} worker(s); outputs in {config.run_dir}/", flush=True)
    import optuna

    from nas.search.report import chance_warning, gather
    from nas.search.run import (
        run_search,  # Optuna and torch load only when a search runs
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress lines say what matters

    try:
        study = run_search(config)
    except KeyboardInterrupt:
        save_run_settings(args, config.run_dir, "search")  # the run started with them; it resumes with them
        raise
    save_run_settings(args, config.run_dir, "search")
    evidence = gather(study)
    best = evidence.selected
    if best is None:
        print("no completed trial: nothing selected")
        return 0
    warning = chance_warning(evidence)
    if warning:
        print(f"warning: {warning}")
    attrs = best.user_attrs
    scores = (f"{evidence.strategy_info.column} {evidence.search_trial(best).user_attrs['accuracy']:.4f}, "
              "stand-alone " if evidence.staged else "")
    latency = f"  {LATENCY.amount(attrs[LATENCY.attr])}" if LATENCY.attr in attrs else ""
    print(f"selected: trial {evidence.search_trial(best).number}  {attrs['arch']}  {attrs['flops'] / 1e6:.1f}M "
          f"FLOPs{latency}  {attrs['params']:,} params  acc {scores}{attrs['accuracy']:.4f}  "
          f"reward {attrs['reward']:.4f}")
    print(f"wrote {config.run_dir}/best.json, trials.csv, pareto.csv, pareto.png, summary.md, search.toml")
    return 0

