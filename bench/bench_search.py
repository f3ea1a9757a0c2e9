"""Search quality at an equal wall-clock budget: NSGA-II and random sampling on the halving strategy's screening
runs (the default), the same on supernet scores, and the stand-alone search (NSGA-II, every candidate trained
with the whole preset), each under several seeds.

Every run gets `--budget` seconds. The supernet runs share one supernet (trained once, its training time
counted in each run's budget): their scoring phase gets what the budget leaves after the supernet and the
finalists; the halving runs' screening phase what it leaves after the finalists. A finalist's time is the median
stand-alone training time of a few random candidates inside the FLOPs window, where finalists come from (measured
once; B0 trains slower than most networks of its FLOPs, and reserving its time short-changed the screening). The
stand-alone run's candidates start until half such a training before the budget ends: the one running at the
timeout runs to its end. Each run's real seconds are printed beside its results.
Then each run's answer is retrained stand-alone under a fresh seed (the same for every run; one training per
distinct network): its reported Pareto set (the finalists, or the stand-alone front) and its selected network.
Printed per method, over seeds: the hypervolume of the retrained (error, FLOPs/T) front against the reference
point (error 1, FLOPs/T = the hard cap), the same front's best accuracy across the FLOPs window (a staged run
reports only finalists inside it), the retrained selected network's reward, and their spread.
Runs and retrainings are cached in `--out`, so the bench resumes, and processes running different seeds side by
side (`--seeds 0 --threads 1`, ...) share it; run once more with every seed for the whole table. A cache holds
one task (the space, data, presets, target, budget, finalists): another one needs its own --out. Usage:

    python bench/bench_search.py [--budget 900] [--seeds 0,1,2] [--threads N] [--out runs/bench-search]
    python bench/bench_search.py --space tiny --proxy tiny --supernet-preset tiny --target-flops 40M --budget 60 \
        --out runs/bench-search-tiny
    python bench/bench_search.py --methods "halving nsga2,halving random,stand-alone nsga2" --budget 420 \
        --out runs/bench-search-420
    python bench/bench_search.py --data folder:DIR --proxy-change lr_per_256=0.008 --out runs/bench-search-folder
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nas._common.atomic import write_text_atomic  # noqa: E402
from nas._common.parse import parse_flops  # noqa: E402
from nas._common.tables import print_table  # noqa: E402
from nas.arch.cost import count_flops  # noqa: E402
from nas.arch.space import RandomChoices, load_space, sample  # noqa: E402
from nas.arch.spec import Spec  # noqa: E402
from nas.errors import NasError  # noqa: E402
from nas.search.config import SearchConfig, proxy_label  # noqa: E402
from nas.search.estimators import proxy_evaluator  # noqa: E402
from nas.search.pareto import hypervolume  # noqa: E402
from nas.search.report import gather  # noqa: E402
from nas.search.run import prepare_supernet, run_search  # noqa: E402
from nas.search.selection import front_trials  # noqa: E402

METHODS = {  # name: (strategy, sampler)
    "halving nsga2": ("halving", "nsga2"),
    "halving random": ("halving", "random"),
    "nsga2 on supernet": ("supernet", "nsga2"),
    "random on supernet": ("supernet", "random"),
    "stand-alone nsga2": ("standalone", "nsga2"),
}
RETRAIN_SEED = 100  # a seed no run trained with: the retrained accuracies carry no selection bias


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=900.0, help="wall-clock seconds per run")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--space", default="mnasnet")
    parser.add_argument("--data", default=SearchConfig.data, help="the data set every run searches and retrains on")
    parser.add_argument("--proxy", default="search")
    parser.add_argument("--proxy-change", action="append", default=[], metavar="FIELD=VALUE",
                        help="change a field of the stand-alone preset, as `nas search --proxy-change`")
    parser.add_argument("--supernet-preset", default="search")
    parser.add_argument("--target-flops", default="400M")
    parser.add_argument("--finalists", type=int, default=SearchConfig.finalists)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, from: {', '.join(METHODS)} (the supernet is trained only for its own)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-search"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"bench_search: --seeds {args.seeds!r}: give whole numbers, e.g. 0,1,2") from None
    target = parse_flops(args.target_flops)
    common = dict(space=args.space, data=args.data, proxy=args.proxy, proxy_changes=tuple(args.proxy_change),
                  supernet_preset=args.supernet_preset, target_flops=target, finalists=args.finalists,
                  runs_dir=str(args.out))
    shared = SearchConfig(study="shared", **common)
    # The cached runs and retrainings answer one task: the study settings apart from what each run sets, and
    # the budget. Another task needs its own --out, else its table would report the first one's runs.
    task = {key: value for key, value in shared.identity().items() if key not in PER_RUN_FIELDS}
    task.update(budget=args.budget, finalists=args.finalists)
    cache_path = args.out / "results.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    _check_task(cache, task, cache_path)
    cache["task"] = task

    def save() -> None:  # merged with what is on disk: one process per seed may share --out
        on_disk = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        _check_task(on_disk, task, cache_path)  # another process, started meanwhile with another task
        cache.update({**on_disk, **cache})
        write_text_atomic(cache_path, json.dumps(cache, indent=1))

    save()  # the task is on disk before any work, so a process started with another one is refused
    methods = {name: METHODS[name] for name in args.methods.split(",") if name in METHODS}
    if len(methods) != len(args.methods.split(",")):
        raise SystemExit(f"--methods: choose from {', '.join(METHODS)}")
    space = load_space(args.space)
    finalist_time = _finalist_seconds(shared, space, cache, save)
    supernet_run = {"seconds": 0.0, "folder": None}
    if any(strategy == "supernet" for strategy, _ in methods.values()):  # trained once, counted in each run
        supernet_run = prepare_supernet(SearchConfig(study="shared", strategy="supernet", **common), space)
    print(f"supernet: {supernet_run['seconds']:.0f} s of training; stand-alone training ~{finalist_time:.0f} s "
          f"per finalist; budget {args.budget:.0f} s per run; {torch.get_num_threads()} threads", flush=True)

    for name, (strategy, sampler) in methods.items():
        for seed in seeds:
            key = f"run:{name}:{seed}"
            if key in cache:
                continue
            study = f"{strategy}-{sampler}-s{seed}"
            config = dict(common, study=study, strategy=strategy, sampler=sampler, seed=seed)
            if strategy in ("supernet", "halving"):
                trained = supernet_run["seconds"] if strategy == "supernet" else 0.0
                left = args.budget - trained - args.finalists * finalist_time
                if left <= 0:
                    raise SystemExit(f"--budget {args.budget:g} s leaves nothing after the supernet and finalists")
                config.update(timeout=left, n_trials=100_000)
                if strategy == "supernet":
                    config["supernet"] = supernet_run["folder"]
            else:
                config.update(timeout=args.budget - finalist_time / 2, n_trials=100_000)
            started = time.perf_counter()
            evidence = gather(run_search(SearchConfig(**config), quiet=True))
            seconds = time.perf_counter() - started + (supernet_run["seconds"] if strategy == "supernet" else 0)
            pool = evidence.finalists if evidence.staged else front_trials(evidence.completed)
            best = evidence.selected
            cache[key] = {"seconds": seconds, "candidates": len(evidence.completed),
                          "front": [t.user_attrs["spec"] for t in pool], "selected": best.user_attrs["spec"]}
            save()
            print(f"{name} seed {seed}: {len(evidence.completed)} candidates in {seconds:.0f} s", flush=True)

    retrain = proxy_evaluator(SearchConfig(**common, seed=RETRAIN_SEED))
    reward = shared.reward
    low, high = shared.window_flops
    rows, per_method = [], {}
    for name in methods:
        for seed in seeds:
            run = cache[f"run:{name}:{seed}"]
            points = []
            for spec_dict in run["front"] + [run["selected"]]:
                spec_key = f"retrain:{json.dumps(spec_dict, sort_keys=True)}"
                if spec_key not in cache:
                    cache[spec_key] = retrain(Spec.from_dict(spec_dict), lambda report: None)
                    save()
                points.append((cache[spec_key], count_flops(Spec.from_dict(spec_dict))))
            accuracy, flops = points[-1]
            # (accuracy, FLOPs/T) up to (0, hard cap): the area the (error, FLOPs/T) front dominates below (1, cap)
            hv = hypervolume([(a, f / target) for a, f in points], shared.hard_cap, 0.0)
            # The staged runs report finalists inside the window only, the stand-alone run its whole front: the
            # window's figure compares them where both report, a network below the window counting at its edge.
            window = hypervolume([(a, max(f, low)) for a, f in points if f <= high], high, 0.0) / (high - low)
            per_method.setdefault(name, []).append((hv, reward(accuracy, flops), window))
            rows.append({"method": name, "seed": seed, "candidates": run["candidates"], "seconds": round(run["seconds"]),
                         "hypervolume": round(hv, 4), "window_acc": round(window, 4),
                         "selected_reward": round(reward(accuracy, flops), 4),
                         "selected_acc": round(accuracy, 4), "selected_mflops": round(flops / 1e6, 1)})
    print()
    print_table(rows)
    summary = [{"method": name, "hypervolume_mean": round(statistics.fmean(v[0] for v in values), 4),
                "hypervolume_spread": round(max(v[0] for v in values) - min(v[0] for v in values), 4),
                "window_acc_mean": round(statistics.fmean(v[2] for v in values), 4),
                "window_acc_spread": round(max(v[2] for v in values) - min(v[2] for v in values), 4),
                "reward_mean": round(statistics.fmean(v[1] for v in values), 4),
                "reward_spread": round(max(v[1] for v in values) - min(v[1] for v in values), 4)}
               for name, values in per_method.items()]
    print()
    print_table(summary)
    print(f"\non {args.data}, retrained stand-alone (preset {proxy_label(shared.identity())}, seed "
          f"{RETRAIN_SEED}); hypervolume of (error, FLOPs/T) up to (1, {shared.hard_cap:g}); window_acc: the best "
          f"retrained accuracy at or below each FLOPs of the {low / 1e6:g}M-{high / 1e6:g}M window, averaged over it; "
          f"reward {reward.describe()}")


CALIBRATION_CANDIDATES = 3
PER_RUN_FIELDS = ("strategy", "sampler", "seed", "population")  # identity fields each method or seed sets


def _check_task(cache: dict, task: dict, path: Path) -> None:
    """SystemExit unless `cache` is empty or holds runs of `task`."""
    if not cache or cache.get("task") == task:
        return
    if "task" not in cache:
        raise SystemExit(f"bench_search: {path} holds runs from before the bench recorded their task: "
                         "choose another --out")
    held = cache["task"]
    differ = ", ".join(f"{key} {held.get(key)!r}, not {task.get(key)!r}" for key in sorted(held.keys() | task.keys())
                       if held.get(key) != task.get(key))
    raise SystemExit(f"bench_search: {path} holds runs of another task ({differ}): choose another --out")


def _finalist_seconds(config: SearchConfig, space, cache: dict, save) -> float:
    """Median seconds of a stand-alone training of a random candidate inside the FLOPs window, measured once."""
    if "finalist_seconds" not in cache:
        evaluate = proxy_evaluator(config)
        low, high = config.window_flops
        rng = random.Random(config.seed)
        draws = (sample(space, RandomChoices(rng)) for _ in range(10_000))
        inside = [spec for spec in draws if low <= count_flops(spec) <= high][:CALIBRATION_CANDIDATES]
        if not inside:
            raise SystemExit(f"no candidate of {space.name} falls inside the FLOPs window {low:g}-{high:g}")
        seconds = []
        for spec in inside:
            started = time.perf_counter()
            evaluate(spec, lambda report: None)
            seconds.append(time.perf_counter() - started)
        cache["finalist_seconds"] = statistics.median(seconds)
        save()
    return float(cache["finalist_seconds"])


if __name__ == "__main__":
    try:
        main()
    except NasError as exc:  # bad settings or data: one line
        raise SystemExit(f"bench_search: {exc}") from None
