"""Thousands of short trials in one study: the per-trial storage and bookkeeping overhead as the study grows.

W worker processes run the real search worker (`search_study`: the objective, the study runner, the
storage, the output refresh of `nas search`) with a stub accuracy source that returns at once (accuracy
from the parameter count), until the study holds N finished trials. A trial's overhead is the time between
two consecutive trial ends of one worker: sampling, FLOPs counting, every storage call and the output
refresh; the script prints its median around trial 100 and around trial N, their ratio, then the time to
replay the finished study from its storage and the wall time of `nas report` on it.

    .venv/bin/python bench/bench_storage_scale.py --storage journal          # 5,000 trials, 4 workers
    .venv/bin/python bench/bench_storage_scale.py --storage postgresql       # a throwaway local server
    .venv/bin/python bench/bench_storage_scale.py --trials 1000 --cost-share 1   # outputs rewritten every trial

Sampler: random, so that what grows is the storage and the bookkeeping, not a sampler's model. The
PostgreSQL server is the tests' throwaway one (tests/postgres.py: fsync off, loopback).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas.arch.cost import count_params  # noqa: E402
from nas.arch.space import load_space  # noqa: E402
from nas.search.config import SearchConfig  # noqa: E402
from nas.search.run import OutputRefresher, open_study, search_study  # noqa: E402
from nas.studies.storage import open_storage  # noqa: E402

WINDOW = 100  # trials on each side of a measuring point


class Epoch:
    def __init__(self, val_acc: float) -> None:
        self.epoch, self.val_acc = 1, val_acc


def stub_evaluate(spec, on_epoch) -> float:
    """An accuracy source that costs nothing: bigger networks score higher (as the tests' stand-in)."""
    accuracy = round(1 - 1 / (1 + count_params(spec) / 5_000_000), 6)
    on_epoch(Epoch(accuracy))
    return accuracy


def worker(config: SearchConfig, index: int, out: str, cost_share: float) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    refresher = OutputRefresher(config.run_dir, quiet=True, cost_share=cost_share)
    gaps: list[tuple[int, float]] = []
    last = time.monotonic()

    def on_trial_end(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal last
        refresher(study, trial)
        now = time.monotonic()
        gaps.append((trial.number, now - last))
        last = now

    search_study(config, stub_evaluate, worker_index=index, on_trial_end=on_trial_end)
    Path(out).write_text(json.dumps(gaps))


def median_ms(gaps: list[tuple[int, float]], low: int, high: int) -> float:
    return 1000 * statistics.median(gap for number, gap in gaps if low <= number < high)


def run(args: argparse.Namespace, url: str | None, folder: Path) -> None:
    # timeout=inf: None would take the strategy's default time budget (18 min), which stopped a 5,000-trial
    # PostgreSQL run at 4,684 trials.
    config = SearchConfig(study="scale", strategy="standalone", runs_dir=str(folder), storage=url,
                          n_trials=args.trials, timeout=math.inf, sampler="random", workers=1)
    open_study(config, load_space(config.space), [])  # created once, so the workers never race to create it
    context = multiprocessing.get_context("spawn")
    outs = [folder / f"gaps{i}.json" for i in range(args.workers)]
    start = time.monotonic()
    processes = [context.Process(target=worker, args=(config, i, str(outs[i]), args.cost_share))
                 for i in range(args.workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    wall = time.monotonic() - start
    assert all(p.exitcode == 0 for p in processes), [p.exitcode for p in processes]
    gaps = [gap for out in outs for gap in json.loads(out.read_text())]

    t0 = time.monotonic()
    study = optuna.load_study(study_name="scale", storage=open_storage(url, config.run_dir))
    trials = study.get_trials(deepcopy=False)
    replay = time.monotonic() - t0
    finished = sum(t.state.is_finished() and t.state.name != "FAIL" for t in trials)

    report = [sys.executable, "-m", "nas", "report", str(config.run_dir), *(["--storage", url] if url else [])]
    t0 = time.monotonic()
    subprocess.run(report, check=True, capture_output=True, cwd=ROOT)
    report_s = time.monotonic() - t0

    # The late window is the last trials the workers ended, whatever their count (a short study still prints).
    n = max(number for number, _ in gaps) + 1
    early, late = median_ms(gaps, WINDOW // 2, WINDOW * 3 // 2), median_ms(gaps, n - WINDOW, n)
    storage = "journal file" if url is None else "PostgreSQL"
    states = collections.Counter(t.state.name for t in trials)
    print(f"{storage}: {finished} finished trials ({len(trials)} in all: "
          f"{', '.join(f'{count} {state}' for state, count in sorted(states.items()))}; {len(gaps)} trial ends "
          f"seen by the workers) by {args.workers} workers in {wall:.0f} s ({finished / wall:.1f} trials/s); "
          f"output refresh cost share {args.cost_share:g}")
    if finished < args.trials:
        print(f"  SHORT: the study holds {finished} finished trials, not the {args.trials} asked for")
    print(f"  per-trial overhead (median per worker): trials {WINDOW // 2}-{WINDOW * 3 // 2}: {early:.1f} ms, "
          f"trials {n - WINDOW}-{n}: {late:.1f} ms, ratio {late / early:.2f}x")
    journal = config.run_dir / "study.journal"
    size = f", journal {journal.stat().st_size / 1e6:.1f} MB" if url is None else ""
    print(f"  replay of the finished study (open + all trials): {replay:.2f} s{size}")
    print(f"  nas report (own process, imports included): {report_s:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", choices=["journal", "postgresql"], default="journal")
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--cost-share", type=float, default=0.1,
                        help="OutputRefresher's share of run time for output rewrites (1: every trial)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-storage-")))
        url = None
        if args.storage == "postgresql":
            from tests.postgres import throwaway_postgres

            url = stack.enter_context(throwaway_postgres())
        run(args, url, folder)


if __name__ == "__main__":
    main()
