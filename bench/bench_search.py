"""NSGA-II against random sampling at an equal trial budget, on the same proxy.

For each sampler a fresh study of N trials (default space, 400M target) is run; the script prints the
hypervolume of each study's (accuracy, FLOPs) front, its best reward, and EfficientNet-B0's reward under the
same proxy as the reference line. Identical architectures are trained once (the proxy is seeded, so a second
training would give the same accuracy): the comparison is unchanged and the bench runs faster.

    .venv/bin/python bench/bench_search.py --threads 1           # default proxy ('search'), 16 trials each
    .venv/bin/python bench/bench_search.py --proxy tiny --n-trials 12 --space tiny --target-flops 60000000
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nas.arch.cost import count_flops  # noqa: E402
from nas.arch.efficientnet import efficientnet  # noqa: E402
from nas.arch.space import encode, load_space  # noqa: E402
from nas.search.config import SearchConfig  # noqa: E402
from nas.search.estimators import proxy_evaluator  # noqa: E402
from nas.search.pareto import hypervolume  # noqa: E402
from nas.search.run import run_search  # noqa: E402
from nas.search.selection import completed_trials  # noqa: E402


def cached(evaluate):
    """Train each distinct architecture once."""
    results: dict[str, tuple[float, list[float]]] = {}

    def run(spec, on_epoch):
        key = spec.to_json()
        if key not in results:
            history: list[float] = []

            def record(report):
                history.append(float(report.val_acc))
                on_epoch(report)

            results[key] = (evaluate(spec, record), history)
        return results[key][0]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=16)
    parser.add_argument("--proxy", default="search")
    parser.add_argument("--space", default="mnasnet")
    parser.add_argument("--target-flops", type=int, default=400_000_000)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-search")
    parser.add_argument("--threads", type=int, help="torch threads (1 is fastest on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    base = SearchConfig(strategy="standalone", space=args.space, proxy=args.proxy, target_flops=args.target_flops, n_trials=args.n_trials,
                        population=args.population, seed=args.seed, runs_dir=str(out), timeout=math.inf)
    evaluate = cached(proxy_evaluator(base))
    reward = base.reward
    ref_flops = base.hard_cap_flops

    rows = []
    b0 = efficientnet("b0").replace(name="")
    try:
        encode(load_space(args.space), b0)
        start = time.perf_counter()
        b0_acc = evaluate(b0, lambda report: None)
        rows.append({"run": "EfficientNet-B0 (reference)", "trials": 1, "completed": 1,
                     "hypervolume": hypervolume([(b0_acc, count_flops(b0))], ref_flops) / 1e6,
                     "best_reward": reward(b0_acc, count_flops(b0)), "best_accuracy": b0_acc,
                     "best_mflops": count_flops(b0) / 1e6, "seconds": time.perf_counter() - start})
    except Exception as exc:  # B0 is not in a custom space: no reference line
        print(f"(no B0 reference: {exc})")

    for sampler in ("nsga2", "random"):
        config = SearchConfig(**{**base.__dict__, "sampler": sampler, "study": sampler})
        start = time.perf_counter()
        study = run_search(config, evaluate=evaluate, quiet=False)
        seconds = time.perf_counter() - start
        done = completed_trials(study.get_trials(deepcopy=False))
        points = [(t.user_attrs["accuracy"], t.user_attrs["flops"]) for t in done]
        best = max(done, key=lambda t: t.user_attrs["reward"]) if done else None
        rows.append({"run": sampler, "trials": len(study.trials), "completed": len(done),
                     "hypervolume": hypervolume(points, ref_flops) / 1e6,
                     "best_reward": best.user_attrs["reward"] if best else float("nan"),
                     "best_accuracy": best.user_attrs["accuracy"] if best else float("nan"),
                     "best_mflops": best.user_attrs["flops"] / 1e6 if best else float("nan"),
                     "seconds": seconds})

    print(f"\nproxy {args.proxy}, space {args.space}, target {args.target_flops / 1e6:g}M, {args.n_trials} trials "
          f"per sampler, seed {args.seed}; hypervolume in accuracy x MFLOPs up to ({ref_flops / 1e6:g}M, acc 0)")
    print(f"{'run':<30}{'trials':>7}{'done':>6}{'hypervolume':>13}{'best reward':>13}{'its acc':>9}"
          f"{'its MFLOPs':>12}{'s':>8}")
    for row in rows:
        print(f"{row['run']:<30}{row['trials']:>7}{row['completed']:>6}{row['hypervolume']:>13.1f}"
              f"{row['best_reward']:>13.4f}{row['best_accuracy']:>9.4f}{row['best_mflops']:>12.1f}"
              f"{row['seconds']:>8.0f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
