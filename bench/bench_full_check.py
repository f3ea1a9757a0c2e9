"""Full-training check of a search's answer: the selected network and EfficientNet-B0, each trained with the
`full` preset under the same seeds, scored on the data set's test split.

Prints per network and seed the test accuracy, and per network the mean, FLOPs, parameters and the reward of
the mean test accuracy (the search's reward: ACC x (FLOPs / T)^w). The goal: the searched network's reward at
least B0's. Runs the default search first (`nas search --enqueue b0 --data DATA --study STUDY`) when the study
folder has no best.json. `--shapes DIR` writes the second data set (bench/synthetic_shapes.py) and uses it.
Every training's result is cached in runs/STUDY/full-check.json, so the bench resumes, and processes training
different seeds or networks side by side (`--seeds 0 --threads 1`, `--networks b0 --threads 1`) share it; the
table comes once every training is cached. Usage:

    python bench/bench_full_check.py [--study search] [--data fashion-mnist] [--seeds 0,1] [--threads N]
    python bench/bench_full_check.py --study search-shapes --shapes runs/shapes
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthetic_shapes import write_shapes  # noqa: E402

from nas._common.atomic import write_text_atomic  # noqa: E402
from nas._common.tables import print_table  # noqa: E402
from nas.arch.cost import count_flops, count_params  # noqa: E402
from nas.arch.efficientnet import efficientnet  # noqa: E402
from nas.arch.spec import load_spec  # noqa: E402
from nas.proxy.data import load_dataset  # noqa: E402
from nas.proxy.presets import get_preset  # noqa: E402
from nas.proxy.trainer import train  # noqa: E402
from nas.search.config import SearchConfig  # noqa: E402
from nas.search.reward import make_reward  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="search")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--shapes", help="write the synthetic shapes data set here and use it as --data")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--preset", default="full")
    parser.add_argument("--networks", default="selected,b0",
                        help="which to train now (the table needs both, trained here or cached before)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.shapes:
        args.data = f"folder:{write_shapes(args.shapes)}"
    run_dir = Path(args.runs_dir) / args.study
    if not (run_dir / "best.json").is_file():
        from nas.search.run import run_search

        print(f"no {run_dir}/best.json: running the default search on {args.data} first", flush=True)
        run_search(SearchConfig(study=args.study, data=args.data, enqueue=("b0",), runs_dir=args.runs_dir))
    best = json.loads((run_dir / "best.json").read_text())
    reward = make_reward(best.get("target_flops") or 400_000_000)
    selected = load_spec(run_dir / "best.json").replace(name="selected")
    networks = {"selected": selected, "EfficientNet-B0": efficientnet("b0")}
    preset = get_preset(args.preset)
    data = load_dataset(args.data, seed=0)
    cache_path = run_dir / "full-check.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"full check of {run_dir}/best.json (trial {best.get('trial')}, {best.get('arch')}) against B0 on "
          f"{args.data}, preset {preset.name}, seeds {seeds}, {torch.get_num_threads()} threads", flush=True)
    chosen = {{"selected": "selected", "b0": "EfficientNet-B0"}.get(n, n) for n in args.networks.split(",")}
    for name, spec in networks.items():
        for seed in seeds:
            key = f"{name}:{seed}:{preset.name}"
            if key not in cache and name in chosen:
                result = train(spec, data, preset, seed=seed, evaluate_test=True)
                cache[key] = {"test_acc": result.test_acc, "val_acc": result.val_acc, "seconds": result.seconds}
                # merged with what is on disk: one process per seed may share the cache (`--seeds 0`, `--seeds 1`)
                on_disk = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
                cache = {**on_disk, **cache}
                write_text_atomic(cache_path, json.dumps(cache, indent=1))
            if key in cache:
                print(f"{name} seed {seed}: test {cache[key]['test_acc']:.4f} ({cache[key]['seconds']:.0f} s)",
                      flush=True)
    if any(f"{name}:{seed}:{preset.name}" not in cache for name in networks for seed in seeds):
        return  # another process trains the rest; run again once it is done for the table
    rows = []
    for name, spec in networks.items():
        accs = [cache[f"{name}:{seed}:{preset.name}"]["test_acc"] for seed in seeds]
        flops = count_flops(spec)
        rows.append({"network": name, "test_acc": " ".join(f"{a:.4f}" for a in accs),
                     "mean": round(statistics.fmean(accs), 4), "flops": flops, "params": count_params(spec),
                     "reward": round(reward(statistics.fmean(accs), flops), 4)})
    print()
    print_table(rows)
    verdict = "at least" if rows[0]["reward"] >= rows[1]["reward"] else "below"
    print(f"\nthe searched network's full-training reward is {verdict} B0's ({rows[0]['reward']} vs {rows[1]['reward']}; "
          f"{reward.describe()})")


if __name__ == "__main__":
    main()
