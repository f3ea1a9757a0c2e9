"""Does the supernet rank candidates like stand-alone training does? The ranking bench of the supernet issue.

Architectures: `--archs` (default 30) drawn uniformly from the default space inside the search's FLOPs window
(300M-500M at the 400M target), plus EfficientNet-B0. Each is trained stand-alone with the proxy preset
(`--proxy`, default `search`) under two seeds on the same data split; the truth is their mean validation
accuracy, and the noise ceiling is Kendall's tau between the two seeds. Estimators ranked against the truth
(Kendall's tau-b with a bootstrap 90% interval over the architectures, and the precision of their top 10%):

- the supernet score (the default supernet preset, trained once on the rest of the training split; scored
  by extraction, BN recalibration and validation accuracy, as the search scores candidates);
- the parameter count (the baseline every estimator must beat);
- the screening run of the halving strategy (the same preset over a quarter of its length, its schedule
  compressed; for the search preset one epoch, 70 steps).

Each stand-alone run also records its validation loss and its accuracy on 5,000 further held-out images, so
the noise ceiling of those truths is printed too. Every run's result is cached in `--out` (results.json) as
it finishes, so the bench resumes where a kill stopped it. Prints the supernet's training time and the
candidates it scores per minute. Usage:

    python bench/bench_supernet_ranking.py [--archs 30] [--out runs/bench-ranking] [--supernet-steps N]
        [--threads N] [--scoring-val N] [--variant LABEL=PRESET[,FIELD=VALUE...] ...] [--proxy-change FIELD=VALUE]

`--variant` trains and ranks further supernets beside the default one (the literature's remedies: a longer
run, no distillation, fewer sandwich members, a lower resolution), e.g.
`--variant long=long --variant no-distill=search,distill=false --variant one-random=search,random_archs=1`.
`--proxy-change` ranks under another stand-alone recipe (e.g. `--proxy-change crop_padding=0 --proxy-change
flip=false`); its runs need an `--out` of their own, which the bench checks.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nas._common.atomic import write_text_atomic  # noqa: E402
from nas._common.parse import parse_field_changes  # noqa: E402
from nas._common.tables import print_table  # noqa: E402
from nas.arch.cost import count_flops, count_params  # noqa: E402
from nas.arch.efficientnet import efficientnet  # noqa: E402
from nas.arch.space import load_space  # noqa: E402
from nas.arch.spec import Spec  # noqa: E402
from nas.model.builder import model_from_state  # noqa: E402
from nas.proxy.augment import normalize, resize_images  # noqa: E402
from nas.proxy.data import load_dataset  # noqa: E402
from nas.proxy.presets import get_preset  # noqa: E402
from nas.proxy.trainer import train  # noqa: E402
from nas.search.config import SCREEN_FRACTION  # noqa: E402
from nas.search.ranking import bootstrap_tau, kendall_tau, top_precision  # noqa: E402
from nas.supernet.scoring import ScoringSettings, SupernetScorer  # noqa: E402
from nas.supernet.training import (  # noqa: E402
    SupernetPreset,
    get_supernet_preset,
    random_spec_in_window,
    train_supernet,
)

TARGET = 400e6
WINDOW = (0.75 * TARGET, 1.25 * TARGET)
HELD_OUT = 5000


def architectures(count: int, seed: int) -> list[Spec]:
    space = load_space("mnasnet")
    rng = random.Random(seed)
    specs = [efficientnet("b0").replace(name="")]
    while len(specs) < count + 1:
        spec = random_spec_in_window(space, WINDOW, rng)
        if WINDOW[0] <= count_flops(spec) <= WINDOW[1] and spec not in specs:
            specs.append(spec)
    return specs


@torch.no_grad()
def evaluate_state(spec: Spec, state: dict, images: torch.Tensor, labels: torch.Tensor, mean, std,
                   resolution: int) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of a trained state dict on uint8 images."""
    model = model_from_state(spec, state).eval()
    x = normalize(resize_images(images, resolution), torch.tensor(mean), torch.tensor(std))
    correct, loss = 0, 0.0
    for start in range(0, len(x), 1000):
        logits = model(x[start:start + 1000])
        correct += int((logits.argmax(1) == labels[start:start + 1000]).sum())
        loss += float(F.cross_entropy(logits, labels[start:start + 1000], reduction="sum"))
    return correct / len(x), loss / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="seed of the architectures and the data split")
    parser.add_argument("--proxy", default="search")
    parser.add_argument("--proxy-change", action="append", default=[], metavar="FIELD=VALUE",
                        help="train the stand-alone and screening runs with this preset field changed; repeatable")
    parser.add_argument("--supernet-steps", type=int)
    parser.add_argument("--scoring-val", type=int, help="validation images per supernet score (default: the search's)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=PRESET[,FIELD=VALUE...]",
                        help="another supernet to train and rank, e.g. no-distill=search,distill=false "
                             "(folder OUT/supernet-LABEL; repeatable)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-ranking"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.out / "results.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}

    def cached(key: str, compute):
        if key not in cache:
            cache[key] = compute()
            write_text_atomic(cache_path, json.dumps(cache, indent=1))
        return cache[key]

    specs = architectures(args.archs, args.seed)
    preset = get_preset(args.proxy).with_changes(**parse_field_changes(args.proxy_change, "--proxy-change"))
    recipe = repr(preset)
    if cache.setdefault("proxy", recipe) != recipe:  # a cache made before this check has none and is taken as is
        raise SystemExit(f"{args.out} holds runs of another proxy recipe: give this one an --out of its own")
    full = load_dataset("fashion-mnist", seed=args.seed)  # the supernet trains on its training split
    standalone = load_dataset("fashion-mnist", subset=preset.subset, seed=args.seed)
    # 5,000 held-out images no stand-alone run trains on: the seeded pool beyond the preset's subset.
    pool_x, pool_y = torch.cat([full.val_x, full.train_x]), torch.cat([full.val_y, full.train_y])
    held_x, held_y = pool_x[preset.subset:preset.subset + HELD_OUT], pool_y[preset.subset:preset.subset + HELD_OUT]
    screening = preset.shortened(SCREEN_FRACTION)  # the halving strategy's first rung
    print(f"{len(specs)} architectures ({WINDOW[0] / 1e6:g}M-{WINDOW[1] / 1e6:g}M FLOPs and B0), proxy {preset.name}, "
          f"{torch.get_num_threads()} threads", flush=True)

    for index, spec in enumerate(specs):
        for seed in (0, 1):
            def run(seed=seed, spec=spec):
                result = train(spec, standalone, preset, seed=seed)
                held = evaluate_state(result.spec, result.state_dict, held_x, held_y, result.mean, result.std,
                                      preset.resolution)
                val = evaluate_state(result.spec, result.state_dict, standalone.val_x, standalone.val_y,
                                     result.mean, result.std, preset.resolution)
                return {"val_acc": result.val_acc, "val_loss": val[1], "held_acc": held[0], "held_loss": held[1],
                        "seconds": result.seconds, "history": [h.val_acc for h in result.history]}
            record = cached(f"standalone:{index}:{seed}", run)
            print(f"arch {index:2d} seed {seed}: val {record['val_acc']:.4f} held-out {record['held_acc']:.4f} "
                  f"({record['seconds']:.0f} s)", flush=True)
        def short(spec=spec):
            result = train(spec, standalone, screening, seed=0)
            return {"val_acc": result.val_acc, "seconds": result.seconds}
        cached(f"screen:{screening.length}:{index}", short)  # keyed by its length: another fraction trains anew
    supernets = [("supernet", get_supernet_preset("search").with_changes(steps=args.supernet_steps))]
    supernets += [parse_variant(text) for text in args.variant]
    estimators: dict[str, tuple[list[float], float]] = {}  # name -> (values, seconds per candidate once set up)
    trainings = []
    for label, sn_preset in supernets:
        folder = args.out / (f"supernet-{sn_preset.steps}" if label == "supernet" else f"supernet-{label}")
        run = train_supernet(load_space("mnasnet"), full, sn_preset, window=WINDOW, seed=args.seed, folder=folder,
                             data_source="fashion-mnist",
                             on_log=lambda f, label=label: print(f"{label} step {f['step']}/{f['steps']} "
                                                                 f"{f['images_per_s']:.0f} img/s", flush=True))
        settings = ScoringSettings(val_images=args.scoring_val) if args.scoring_val else ScoringSettings()
        scorer = SupernetScorer(run.supernet, full, sn_preset.resolution, settings, seed=args.seed)
        scorer.score(specs[0])  # warm-up
        scores = [scorer.score(spec) for spec in specs]
        cost = statistics.median(s.seconds for s in scores)
        estimators[f"{label} score"] = ([s.accuracy for s in scores], cost)
        estimators[f"{label} val loss (negated)"] = ([-s.loss for s in scores], cost)
        trainings.append({"supernet": label, "preset": describe_preset(sn_preset), "training s": round(run.seconds),
                          "scoring s / candidate": round(cost, 3), "candidates / min": round(60 / cost)})

    seeds = [[cache[f"standalone:{i}:{s}"] for s in (0, 1)] for i in range(len(specs))]
    # Records cached before the runs were timed have no seconds: the median is over those that have.
    screen_runs = [cache[f"screen:{screening.length}:{i}"] for i in range(len(specs))]
    screen_seconds = [run["seconds"] for run in screen_runs if "seconds" in run]
    estimators["parameter count"] = ([float(count_params(spec)) for spec in specs], 0.0)
    screened = [run["val_acc"] for run in screen_runs]
    estimators[f"screening run ({SCREEN_FRACTION:g} of the preset)"] = (screened,
                                         statistics.median(screen_seconds) if screen_seconds else math.nan)
    # The truths: the proxy's validation accuracy, and the changed proxies the issue lists when that one is too
    # flat -- validation loss, and a larger validation set (the 5,000 held-out images), by accuracy and by loss.
    truths = {"val accuracy": ("val_acc", 1), "val loss": ("val_loss", -1),
              "held-out accuracy (5,000)": ("held_acc", 1), "held-out loss (5,000)": ("held_loss", -1)}
    print()
    print("noise ceilings (Kendall tau between the two stand-alone seeds):")
    ceilings, means = [], {}
    for name, (key, sign) in truths.items():
        a, b = ([sign * runs[s][key] for runs in seeds] for s in (0, 1))
        low, high = bootstrap_tau(a, b)
        ceilings.append({"truth": name, "tau": round(kendall_tau(a, b), 3), "90% interval": f"{low:.2f} to {high:.2f}"})
        means[name] = ([statistics.fmean(sign * r[key] for r in runs) for runs in seeds], kendall_tau(a, b))
    print_table(ceilings)
    for name, (truth, ceiling) in means.items():
        rows = []
        for estimator, (values, cost) in estimators.items():
            tau = kendall_tau(values, truth)
            low, high = bootstrap_tau(values, truth)
            rows.append({"estimator": estimator, "tau": round(tau, 3), "90% interval": f"{low:.2f} to {high:.2f}",
                         "tau / ceiling": round(tau / ceiling, 2) if ceiling > 0 else math.nan,
                         "top-10% precision": round(top_precision(values, truth), 2),
                         "s / candidate": round(cost, 2)})
        print(f"\nestimators against the mean stand-alone {name} (ceiling {ceiling:.3f}):")
        print_table(rows)
    # The screening run shares seed 0 (initialisation, first batches) with the truth's seed-0 run: against the
    # seed-1 run alone the two share no noise, which is the comparison the seed-to-seed ceiling makes.
    print("\nthe screening run (seed 0) against the seed-1 run alone (no shared seed), beside the ceiling:")
    rows = []
    for name, (key, sign) in truths.items():
        other = [sign * runs[1][key] for runs in seeds]
        low, high = bootstrap_tau(screened, other)
        rows.append({"truth (seed 1)": name, "tau": round(kendall_tau(screened, other), 3),
                     "90% interval": f"{low:.2f} to {high:.2f}", "ceiling": round(means[name][1], 3)})
    print_table(rows)
    print("\nsupernets (scoring: extraction, BN recalibration, validation accuracy):")
    print_table(trainings)
    print(f"stand-alone: median {statistics.median(r['seconds'] for runs in seeds for r in runs):.0f} s per run")
    scores = estimators["supernet score"][0]
    print_table([{"arch": i, "flops": count_flops(spec), "params": count_params(spec),
                  "truth": round(means["val accuracy"][0][i], 4), "seed0": round(seeds[i][0]["val_acc"], 4),
                  "seed1": round(seeds[i][1]["val_acc"], 4), "supernet": round(scores[i], 4)}
                 for i, spec in enumerate(specs)])


def parse_variant(text: str) -> tuple[str, SupernetPreset]:
    """`LABEL=PRESET[,FIELD=VALUE...]` -> (label, that supernet preset with the fields changed)."""
    label, _, rest = text.partition("=")
    name, *changes = rest.split(",")
    if not label or not name:
        raise SystemExit(f"--variant {text!r}: expected LABEL=PRESET[,FIELD=VALUE...]")
    values = parse_field_changes(changes, "--variant")
    return label, get_supernet_preset(name).with_changes(**values)


def describe_preset(preset: SupernetPreset) -> str:
    """The fields where a supernet preset differs from the default search one."""
    default = get_supernet_preset("search")
    changed = [f"{key}={value}" for key, value in vars(preset).items()
               if key != "name" and value != getattr(default, key)]
    return ", ".join(changed) or "the search preset"

if __name__ == "__main__":
    main()
